CREATE DATABASE resonate OWNER record_deleter;
