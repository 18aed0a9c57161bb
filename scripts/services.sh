#!/usr/bin/env bash
# Provision the real services the test suite talks to, on 127.0.0.1 only:
#   kafka     Apache Kafka 4.x, single-node KRaft, jars resolved from Maven Central
#             (scripts/kafka/pom.xml)
#   resonate  the Resonate server (Go module github.com/resonatehq/resonate),
#             SQLite store in .services/resonate/ (SERVICES_RESONATE_STORE=postgres:
#             the PostgreSQL below, database "resonate")
#   postgres  a throwaway PostgreSQL cluster in a temp dir
#
#   (and, not a service: `up` installs Debian's chromium when missing, for the dashboard's
#    browser test, tests/system/test_dashboard.py)
#
# Usage:
#   scripts/services.sh up [kafka] [resonate] [postgres]   (no names = all three)
#   scripts/services.sh down [NAME...]                     (no names = all)
#   scripts/services.sh stop NAME [--kill]                 keep port + data
#   scripts/services.sh start NAME                         same port + data
#   scripts/services.sh restart NAME [--kill]
#   scripts/services.sh restart-resonate
#   scripts/services.sh status | env
#   scripts/services.sh resonate-cmd --dir DIR --api PORT --poll PORT [--metrics PORT]
#                       [--postgres postgresql://USER:PASSWORD@HOST:PORT/DB] [--bin PATH]
#                       [--auth USER:PASSWORD]  (basic auth on its API and poll port)
#       print, one argument a line, the command that runs a private Resonate server with
#       the flags `up` uses (SQLite store DIR/resonate.db unless --postgres). The server's
#       flags are written here only (docker-compose.yml has its own copy).
#
# `up` writes .services/env; `source .services/env` and record-deleter (any command)
# talks to these services. It exports the names record-deleter reads:
#   BROKER_BOOTSTRAP_SERVERS                     kafka    (host:port)
#   RESONATE_URL, RESONATE_MESSAGE_SOURCE_PORT   resonate (http://host:port, port)
#   RESONATE_USERNAME, RESONATE_PASSWORD         resonate (basic auth on its API + poll port)
#   DATABASE_URL                                 postgres (postgresql+psycopg://...)
# the libpq names, so plain `psql` opens the application database:
#   PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE
# and, outside the application's namespaces, what was provisioned:
#   SERVICES_RESONATE_BIN (server binary), SERVICES_RESONATE_STORE (sqlite|postgres),
#   SERVICES_RESONATE_POSTGRES_URL (its store, postgres only), RECORD_DELETER_SERVICES_OWNED;
#   the authenticated, encrypted endpoints (a CA made by this script, $SVC/tls/ca.pem, signs
#   every certificate, all for 127.0.0.1 and localhost):
#   SERVICES_KAFKA_SASL_BOOTSTRAP  SASL_SSL listener (SCRAM-SHA-256, SCRAM-SHA-512, PLAIN)
#   SERVICES_KAFKA_SASL_USERNAME, SERVICES_KAFKA_SASL_PASSWORD   its user (made at format time)
#   SERVICES_KAFKA_MTLS_BOOTSTRAP  SSL listener that requires a client certificate
#   SERVICES_KAFKA_CA, SERVICES_POSTGRES_CA   the CA (same file)
#   SERVICES_TLS_CLIENT_CERT, SERVICES_TLS_CLIENT_KEY   a client certificate for mTLS
#   SERVICES_POSTGRES_TLS_URL      a role that may connect over TLS only, sslmode=verify-full
# A service whose variable is already set in the environment is external: not
# started, its value passed through:
#   kafka:    BROKER_BOOTSTRAP_SERVERS
#   resonate: RESONATE_URL and RESONATE_MESSAGE_SOURCE_PORT
#   postgres: DATABASE_URL (must be a postgresql URL)
# (values that came from sourcing an earlier .services/env are not external:
#  RECORD_DELETER_SERVICES_OWNED lists those.)
#
# Knobs (provisioning only, so none in record-deleter's BROKER_/DATABASE_/RESONATE_/
# WORKFLOW_/WORKER_ namespaces): RECORD_DELETER_CACHE (default ~/.cache/record-deleter:
# Maven repo, Kafka jars, resonate binary), SERVICES_KAFKA_VERSION,
# SERVICES_RESONATE_VERSION, SERVICES_RESONATE_STORE=sqlite|postgres,
# SERVICES_RESONATE_LOG_LEVEL (info), SERVICES_RESONATE_POLL_TTC (10s: a task sent to a
# worker that died before claiming it is re-sent after this), SERVICES_READY_TIMEOUT (s,
# default 120), SERVICES_STOP_TIMEOUT (s, graceful stop, 30), SERVICES_DOWN_TIMEOUT (s, 10),
# PG_BIN (dir with initdb/postgres/pg_ctl), RECORD_DELETER_SERVICES_DIR (state dir,
# default .services; give each concurrent user its own). Logs: .services/<name>.log.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
SVC="${RECORD_DELETER_SERVICES_DIR:-$REPO/.services}"
CACHE="${RECORD_DELETER_CACHE:-$HOME/.cache/record-deleter}"
ALL_SERVICES=(kafka postgres resonate)   # kafka first: slowest to boot, checked last
export LC_NUMERIC=C

KAFKA_POM="$SCRIPT_DIR/kafka/pom.xml"
KAFKA_PROBE_TOPIC="services-readiness-probe"
RESONATE_MODULE="github.com/resonatehq/resonate"
# v0.8.2 is the newest tag the Go proxy serves here whose HTTP API matches
# resonate-sdk 0.6.7 (v0.7.0 requires task.recv on POST /promises/task).
RESONATE_VERSION="${SERVICES_RESONATE_VERSION:-v0.8.2}"
PG_USER=record_deleter
PG_PASSWORD=record_deleter
PG_DB=record_deleter
PG_RESONATE_DB=resonate
PG_TLS_USER=record_deleter_tls        # may log in over TLS only; member of $PG_USER
READY_TIMEOUT="${SERVICES_READY_TIMEOUT:-120}"
STOP_TIMEOUT="${SERVICES_STOP_TIMEOUT:-30}"   # graceful stop that keeps data (stop/restart)
DOWN_TIMEOUT="${SERVICES_DOWN_TIMEOUT:-10}"   # down throws the data away: SIGKILL sooner

STARTED_NOW=()     # services this invocation started (stopped again if `up` fails)
CURRENT=""         # service being worked on, for error messages
REPORTED=0

# ---------------------------------------------------------------- helpers
say() { printf '[services] %s\n' "$*" >&2; }
t0() { printf '%s' "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1fs", b - a }'; }
logf() { printf '%s/%s.log' "$SVC" "$1"; }
pidf() { printf '%s/%s.pid' "$SVC" "$1"; }
statef() { printf '%s/%s.state' "$SVC" "$1"; }

# fail SERVICE REASON: one clear line (plus the log tail above it), stop what this
# invocation started, exit 1.
fail() {
  local svc="$1" reason="$2" log tail1="" recent
  log=$(logf "$svc")
  if [[ -s "$log" ]]; then
    # the log since the last "== step" marker, colour codes stripped
    recent=$(awk '/^== /{buf=""} {buf=buf $0 "\n"} END{printf "%s", buf}' "$log" \
      | sed 's/\x1b\[[0-9;]*m//g' | grep -v '^[[:space:]]*$' || true)
    printf '[services] ---- last lines of %s ----\n' "${log#"$REPO"/}" >&2
    tail -n 25 <<<"$recent" | sed 's/^/[services] | /' >&2
    # the first error-looking line is usually the cause; else the last line
    tail1=$(grep -m1 -E 'ERROR|FATAL|[Ee]rror:|Exception|panic:|cannot |could not ' <<<"$recent" \
      || tail -n 1 <<<"$recent")
    tail1=$(cut -c1-300 <<<"$tail1")
  fi
  REPORTED=1
  cleanup_started
  printf '[services] FAILED %s: %s%s\n' "$svc" "$reason" "${tail1:+ -- log: $tail1}" >&2
  exit 1
}

cleanup_started() {
  local s
  for s in "${STARTED_NOW[@]}"; do
    say "$s: stopping again because up failed"
    down_service "$s" quiet || true
  done
  STARTED_NOW=()
  if compgen -G "$SVC/*.state" >/dev/null; then write_env || true; else rm -f "$SVC/env"; fi
}

on_exit() {
  local rc=$?
  if [[ $rc -ne 0 && $REPORTED -eq 0 && -n "$CURRENT" ]]; then
    REPORTED=1
    cleanup_started
    printf '[services] FAILED %s: interrupted or unexpected error (exit %s) -- see %s\n' \
      "$CURRENT" "$rc" "${SVC#"$REPO"/}/$CURRENT.log" >&2
  fi
}
trap on_exit EXIT
trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM   # so on_exit runs

ALLOCATED_PORTS=" "
free_port() { # VAR: a free 127.0.0.1 port, distinct from the others picked in this run
  local p
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    p=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
    if [[ "$ALLOCATED_PORTS" != *" $p "* ]]; then
      ALLOCATED_PORTS+="$p "
      printf -v "$1" '%s' "$p"
      return 0
    fi
  done
  return 1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pid_alive() { # PID [cmdline-substring]
  local pid="$1" want="${2:-}" st cmdline
  [[ -n "$pid" && -e "/proc/$pid" ]] || return 1
  st=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)
  [[ -n "$st" && "$st" != Z && "$st" != X ]] || return 1   # a zombie is dead
  if [[ -n "$want" ]]; then   # guards against a recycled PID
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
    [[ "$cmdline" == *"$want"* ]] || return 1
  fi
}

proc_marker() { # what /proc/PID/cmdline of the service's main process contains
  case "$1" in
    kafka) echo "kafka.Kafka" ;;
    resonate) echo "resonate" ;;
    postgres) echo "postgres" ;;
  esac
}

service_pid() { # prints PID if the service's recorded process is alive
  local f pid
  f=$(pidf "$1")
  [[ -f "$f" ]] || return 1
  pid=$(cat "$f" 2>/dev/null || true)
  pid_alive "$pid" "$(proc_marker "$1")" || return 1
  printf '%s' "$pid"
}

# kill_pid PID SIGNAL: signal, wait up to STOP_TIMEOUT, then SIGKILL.
kill_pid() {
  local pid="$1" sig="${2:-TERM}" deadline wait_s="${STOP_WAIT:-$STOP_TIMEOUT}"
  pid_alive "$pid" || return 0
  kill -"$sig" "$pid" 2>/dev/null || true
  deadline=$((SECONDS + wait_s))
  while pid_alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
  if pid_alive "$pid"; then
    say "pid $pid did not exit within ${wait_s}s after SIG$sig; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while pid_alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
  fi
  ! pid_alive "$pid"
}

write_state() { # SERVICE VAR...  (values taken from the current shell)
  local f v
  f=$(statef "$1"); shift
  {
    for v in "$@"; do printf '%s=%q\n' "$v" "${!v}"; done
  } >"$f.tmp"
  mv "$f.tmp" "$f"
}

load_state() { local f; f=$(statef "$1"); [[ -f "$f" ]] || return 1; # shellcheck disable=SC1090
  source "$f"; }

# ----------------------------------------------------------------- TLS material
# One throwaway CA per state dir ($SVC/tls), made with openssl by the first service that needs it;
# it signs the broker's and PostgreSQL's certificates (127.0.0.1 and localhost) and a client
# certificate for mTLS. `down` removes it with the last service.
tls_ca() {
  local d="$SVC/tls" out
  [[ -f "$d/ca.pem" && -f "$d/ca.key" ]] && return 0
  command -v openssl >/dev/null || fail "$CURRENT" "openssl not found (needed to make the test CA)"
  mkdir -p "$d"; chmod 755 "$d"
  out=$(openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=record-deleter test CA" \
    -keyout "$d/ca.key" -out "$d/ca.pem" -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign 2>&1) || fail "$CURRENT" "openssl could not make the CA: $out"
  chmod 600 "$d/ca.key"; chmod 644 "$d/ca.pem"
}

tls_cert() { # NAME CN USAGE(serverAuth|clientAuth): $SVC/tls/NAME.{key,pem}, signed by the CA
  local d="$SVC/tls" name="$1" cn="$2" usage="$3" ext out
  tls_ca
  [[ -f "$d/$name.pem" && -f "$d/$name.key" ]] && return 0
  ext="$d/$name.ext"
  printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=%s\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n' \
    "$usage" >"$ext"
  out=$( { openssl req -new -newkey rsa:2048 -nodes -subj "/CN=$cn" -keyout "$d/$name.key" -out "$d/$name.csr" \
    && openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 30 \
      -extfile "$ext" -out "$d/$name.pem"; } 2>&1) || fail "$CURRENT" "openssl could not make the $name certificate: $out"
  chmod 600 "$d/$name.key"; rm -f "$d/$name.csr" "$ext"
}

mask_url() { sed 's#\(://[^:/@]*:\)[^@]*@#\1***@#' <<<"$1"; }   # hide a URL's password

is_owned_env() { [[ " ${RECORD_DELETER_SERVICES_OWNED:-} " == *" $1 "* ]]; }

external_for() { # SERVICE -> 0 if provided from outside
  is_owned_env "$1" && return 1
  case "$1" in
    kafka) [[ -n "${BROKER_BOOTSTRAP_SERVERS:-}" ]] ;;
    resonate) [[ -n "${RESONATE_URL:-}" && -n "${RESONATE_MESSAGE_SOURCE_PORT:-}" ]] ;;
    postgres) [[ -n "${DATABASE_URL:-}" ]] ;;
  esac
}

# ------------------------------------------------------------------ env file
write_env() {
  local f="$SVC/env" owned="" s
  {
    echo "# written by scripts/services.sh; source it: . ${f#"$REPO"/}"
    echo "# endpoints, under the names record-deleter reads; PG*: libpq's (psql);"
    echo "# SERVICES_*: what was provisioned (not read by record-deleter)"
    if (load_state kafka) 2>/dev/null; then (
      load_state kafka
      if [[ "$KAFKA_EXTERNAL" == 1 ]]; then
        printf 'export BROKER_BOOTSTRAP_SERVERS=%q\n' "$KAFKA_EXT_BOOTSTRAP"
      else
        printf 'export BROKER_BOOTSTRAP_SERVERS=%q\n' "127.0.0.1:$KAFKA_PORT"
        printf 'export SERVICES_KAFKA_SASL_BOOTSTRAP=%q\n' "127.0.0.1:$KAFKA_SASL_PORT"
        printf 'export SERVICES_KAFKA_MTLS_BOOTSTRAP=%q\n' "127.0.0.1:$KAFKA_MTLS_PORT"
        printf 'export SERVICES_KAFKA_SASL_USERNAME=%q SERVICES_KAFKA_SASL_PASSWORD=%q\n' \
          "$KAFKA_SASL_USER" "$KAFKA_SASL_PASSWORD"
        printf 'export SERVICES_KAFKA_CA=%q\n' "$SVC/tls/ca.pem"
        printf 'export SERVICES_TLS_CLIENT_CERT=%q SERVICES_TLS_CLIENT_KEY=%q\n' \
          "$SVC/tls/client.pem" "$SVC/tls/client.key"
      fi
    ); fi
    if (load_state resonate) 2>/dev/null; then (
      load_state resonate
      if [[ "$RESONATE_EXTERNAL" == 1 ]]; then
        printf 'export RESONATE_URL=%q\n' "$RESONATE_EXT_URL"
        printf 'export RESONATE_MESSAGE_SOURCE_PORT=%q\n' "$RESONATE_EXT_MSG_PORT"
      else
        printf 'export RESONATE_URL=%q\n' "http://127.0.0.1:$RESONATE_API_PORT"
        printf 'export RESONATE_MESSAGE_SOURCE_PORT=%q\n' "$RESONATE_POLL_PORT"
        printf 'export RESONATE_USERNAME=%q RESONATE_PASSWORD=%q\n' "$RESONATE_AUTH_USER" "$RESONATE_AUTH_PASSWORD"
        printf 'export SERVICES_RESONATE_BIN=%q\n' "$RESONATE_BIN"
        printf 'export SERVICES_RESONATE_STORE=%q\n' "$RESONATE_STORE_KIND"
        if [[ "$RESONATE_STORE_KIND" == postgres ]]; then
          printf 'export SERVICES_RESONATE_POSTGRES_URL=%q\n' \
            "postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$RESONATE_PG_PORT/$PG_RESONATE_DB"
        fi
      fi
    ); fi
    if (load_state postgres) 2>/dev/null; then (
      load_state postgres
      if [[ "$POSTGRES_EXTERNAL" == 1 ]]; then
        printf 'export DATABASE_URL=%q\n' "$POSTGRES_EXT_URL"
      else
        printf 'export DATABASE_URL=%q\n' \
          "postgresql+psycopg://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB"
        printf 'export PGHOST=127.0.0.1 PGPORT=%q PGUSER=%q PGPASSWORD=%q PGDATABASE=%q\n' \
          "$PG_PORT" "$PG_USER" "$PG_PASSWORD" "$PG_DB"
        printf 'export SERVICES_POSTGRES_CA=%q\n' "$SVC/tls/ca.pem"
        printf 'export SERVICES_POSTGRES_TLS_URL=%q\n' \
          "postgresql+psycopg://$PG_TLS_USER:$PG_TLS_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB?sslmode=verify-full&sslrootcert=$SVC/tls/ca.pem"
      fi
    ); fi
    for s in "${ALL_SERVICES[@]}"; do
      if (load_state "$s" && v="${s^^}_EXTERNAL" && [[ "${!v}" == 0 ]]) 2>/dev/null; then
        owned+="${owned:+ }$s"
      fi
    done
    printf 'export RECORD_DELETER_SERVICES_OWNED=%q\n' "$owned"
  } >"$f.tmp"
  mv "$f.tmp" "$f"
}

# ===================================================================== KAFKA
kafka_provision() {
  local log key jars tmp t mvnargs=() ver
  log=$(logf kafka); t=$(t0)
  ver="${SERVICES_KAFKA_VERSION:-}"
  [[ -n "$ver" ]] && mvnargs+=("-Dkafka.version=$ver")
  key=$( { cat "$KAFKA_POM"; echo "$ver"; } | sha256sum | cut -c1-16)
  jars="$CACHE/kafka/jars-$key"
  if [[ -f "$jars/.complete" ]]; then
    KAFKA_JARS="$jars"
  else
    command -v java >/dev/null || fail kafka "java not found (need a JDK/JRE 17+)"
    command -v mvn >/dev/null || fail kafka "mvn not found (needed to resolve Kafka from Maven Central)"
    say "kafka: resolving jars from Maven Central (first run) ..."
    tmp="$jars.tmp.$$"
    rm -rf "$tmp"; mkdir -p "$CACHE/kafka"
    printf '\n== %s\n' "mvn dependency:copy-dependencies $(date -Is)" >>"$log"
    if ! mvn -B -q -Dstyle.color=never -f "$KAFKA_POM" -Dmaven.repo.local="$CACHE/m2" "${mvnargs[@]}" \
        dependency:copy-dependencies -DoutputDirectory="$tmp" >>"$log" 2>&1 </dev/null; then
      rm -rf "$tmp"
      fail kafka "mvn could not resolve the Kafka jars"
    fi
    touch "$tmp/.complete"
    rm -rf "$jars"; mv "$tmp" "$jars"
    KAFKA_JARS="$jars"
  fi
  KAFKA_VERSION_RESOLVED=$(cd "$KAFKA_JARS" && ls kafka_2.13-*.jar 2>/dev/null | sed 's/^kafka_2.13-//; s/\.jar$//' | head -1)
  [[ -n "$KAFKA_VERSION_RESOLVED" ]] || fail kafka "no kafka_2.13 jar in $KAFKA_JARS"
  say "kafka: jars for Kafka $KAFKA_VERSION_RESOLVED ready in $(since "$t") ($KAFKA_JARS)"
}

kafka_tool() { # CLASS ARGS... (admin tools, quiet logging, bounded time)
  timeout 60 java -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="$SVC/kafka/tools-log4j2.properties" \
    -cp "$KAFKA_JARS/*" "$@"
}

kafka_init() { # fresh config + formatted storage
  local dir="$SVC/kafka" log cid
  log=$(logf kafka)
  rm -rf "$dir"; mkdir -p "$dir/data"
  free_port KAFKA_PORT; free_port KAFKA_CONTROLLER_PORT; free_port KAFKA_SASL_PORT; free_port KAFKA_MTLS_PORT
  # the authenticated listeners: SASL_SSL (SCRAM-SHA-256/-512 users made at format time, PLAIN from
  # the JAAS line below) and SSL with a required client certificate (mTLS); same user + password
  KAFKA_SASL_USER=record-deleter
  KAFKA_SASL_PASSWORD=$(openssl rand -hex 16)
  KAFKA_KEYSTORE_PASSWORD=$(openssl rand -hex 16)
  tls_cert kafka-broker 127.0.0.1 serverAuth
  tls_cert client record-deleter-client clientAuth
  local out
  out=$(openssl pkcs12 -export -in "$SVC/tls/kafka-broker.pem" -inkey "$SVC/tls/kafka-broker.key" \
    -certfile "$SVC/tls/ca.pem" -name broker -out "$dir/broker.p12" \
    -passout "pass:$KAFKA_KEYSTORE_PASSWORD" 2>&1) || fail kafka "openssl pkcs12 (broker keystore) failed: $out"
  cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_PORT,SSL://127.0.0.1:$KAFKA_MTLS_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_PORT,SSL://127.0.0.1:$KAFKA_MTLS_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL
ssl.keystore.type=PKCS12
ssl.keystore.location=$dir/broker.p12
ssl.keystore.password=$KAFKA_KEYSTORE_PASSWORD
ssl.key.password=$KAFKA_KEYSTORE_PASSWORD
ssl.truststore.type=PEM
ssl.truststore.location=$SVC/tls/ca.pem
listener.name.ssl.ssl.client.auth=required
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$KAFKA_SASL_USER="$KAFKA_SASL_PASSWORD";
log.dirs=$dir/data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=5
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=5
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# the consumer group protocol (KIP-848) keeps each group's session timeout on the broker (45 s by
# default, which stays the default here): the worker sets its group's own from
# BROKER_SESSION_TIMEOUT_SECONDS, which the broker accepts only above this floor (45 s by default;
# production brokers need it lowered the same way, README "Kafka settings")
group.consumer.min.session.timeout.ms=6000
group.consumer.min.heartbeat.interval.ms=500
group.consumer.heartbeat.interval.ms=2000
# a broker killed with SIGKILL re-registers once its old session times out (default 9s)
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=4000
EOF
  cat >"$dir/log4j2.properties" <<'EOF'
status = warn
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
EOF
  cat >"$dir/tools-log4j2.properties" <<'EOF'
status = warn
appender.stderr.type = Console
appender.stderr.name = STDERR
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stderr.ref = STDERR
EOF
  # like Kafka's Uuid.randomUuid(): never starting with "-" (it would parse as an option)
  cid=$(python3 -c '
import base64, uuid
while True:
    c = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not c.startswith("-"):
        break
print(c)')
  printf '\n== %s\n' "StorageTool format --standalone -t $cid $(date -Is)" >>"$log"
  kafka_tool kafka.tools.StorageTool format --standalone -t "$cid" -c "$dir/server.properties" \
    --add-scram "SCRAM-SHA-256=[name=$KAFKA_SASL_USER,password=$KAFKA_SASL_PASSWORD]" \
    --add-scram "SCRAM-SHA-512=[name=$KAFKA_SASL_USER,password=$KAFKA_SASL_PASSWORD]" \
    >>"$log" 2>&1 </dev/null || fail kafka "kafka.tools.StorageTool format failed"
  KAFKA_EXTERNAL=0
  write_state kafka KAFKA_EXTERNAL KAFKA_PORT KAFKA_CONTROLLER_PORT KAFKA_JARS KAFKA_VERSION_RESOLVED \
    KAFKA_SASL_PORT KAFKA_MTLS_PORT KAFKA_SASL_USER KAFKA_SASL_PASSWORD
}

kafka_launch() {
  local dir="$SVC/kafka" log
  log=$(logf kafka)
  local cmd=(java -Xms128m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$dir/log4j2.properties"
    -cp "$KAFKA_JARS/*" kafka.Kafka "$dir/server.properties")
  printf '\n== %s\n' "start $(date -Is): ${cmd[*]}" >>"$log"
  KAFKA_LAUNCHED_AT=$(t0)
  setsid "${cmd[@]}" >>"$log" 2>&1 </dev/null 9>&- &
  echo $! >"$(pidf kafka)"
}

kafka_wait() { # [full]: also create/list/delete a probe topic
  local full="${1:-}" pid deadline out t
  t=$(t0)
  pid=$(cat "$(pidf kafka)")
  deadline=$((SECONDS + READY_TIMEOUT))
  until port_open "$KAFKA_PORT"; do
    pid_alive "$pid" || fail kafka "broker process exited during startup"
    ((SECONDS < deadline)) || fail kafka "port 127.0.0.1:$KAFKA_PORT not open after ${READY_TIMEOUT}s"
    sleep 0.2
  done
  until port_open "$KAFKA_SASL_PORT" && port_open "$KAFKA_MTLS_PORT"; do
    pid_alive "$pid" || fail kafka "broker process exited during startup"
    ((SECONDS < deadline)) || fail kafka "TLS listeners :$KAFKA_SASL_PORT/:$KAFKA_MTLS_PORT not open after ${READY_TIMEOUT}s"
    sleep 0.2
  done
  # a metadata request must succeed
  until out=$(kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" --list 2>&1); do
    pid_alive "$pid" || fail kafka "broker process exited during startup"
    ((SECONDS < deadline)) || fail kafka "metadata request (TopicCommand --list) failed: $(tail -n1 <<<"$out")"
    sleep 0.5
  done
  if [[ "$full" == full ]]; then
    local tc=(org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT")
    out=$(kafka_tool "${tc[@]}" --create --if-not-exists --topic "$KAFKA_PROBE_TOPIC" \
      --partitions 1 --replication-factor 1 2>&1) || fail kafka "probe topic create failed: $(tail -n1 <<<"$out")"
    out=$(kafka_tool "${tc[@]}" --list 2>&1) || fail kafka "topic list failed: $(tail -n1 <<<"$out")"
    grep -qx -- "$KAFKA_PROBE_TOPIC" <<<"$out" || fail kafka "probe topic not listed after create"
    out=$(kafka_tool "${tc[@]}" --delete --topic "$KAFKA_PROBE_TOPIC" 2>&1) \
      || fail kafka "probe topic delete failed: $(tail -n1 <<<"$out")"
  fi
  say "kafka: Kafka $KAFKA_VERSION_RESOLVED ready at 127.0.0.1:$KAFKA_PORT (controller :$KAFKA_CONTROLLER_PORT), $(since "${KAFKA_LAUNCHED_AT:-$t}") after launch"
}

# ================================================================== RESONATE
resonate_provision() {
  local bin="$CACHE/bin/resonate-$RESONATE_VERSION" log t work src dir
  log=$(logf resonate); t=$(t0)
  if [[ -x "$bin" ]]; then
    RESONATE_BIN="$bin"
    say "resonate: binary $RESONATE_VERSION cached ($bin) $(since "$t")"
    return 0
  fi
  command -v go >/dev/null || fail resonate "go not found (needed to build the Resonate server)"
  say "resonate: building $RESONATE_MODULE@$RESONATE_VERSION from the Go module proxy (first run, ~1 min) ..."
  mkdir -p "$CACHE/bin"
  work=$(mktemp -d "${TMPDIR:-/tmp}/record-deleter-resonate-build.XXXXXX")
  printf '\n== %s\n' "build $RESONATE_MODULE@$RESONATE_VERSION $(date -Is)" >>"$log"
  # `go install module@version` refuses modules with replace directives (v0.8.x
  # replaces three nested plugin modules that module zips do not contain, and that
  # the default build tags do not compile). So: build the downloaded module source
  # as the main module, with an empty go.mod standing in for each missing
  # local replacement.
  # (set -e does not apply inside a tested subshell: every step says `|| exit 1`)
  if ! (
    cd "$work" || exit 1
    export GOWORK=off GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
    dir=$(go mod download -json "$RESONATE_MODULE@$RESONATE_VERSION" | python3 -c 'import json,sys; d=json.load(sys.stdin); e=d.get("Error"); print(d["Dir"]) if not e else sys.exit(e)') || exit 1
    src="$work/src"
    cp -r "$dir" "$src" && chmod -R u+w "$src" && cd "$src" || exit 1
    go mod edit -json | python3 -c '
import json, os, sys
for r in json.load(sys.stdin).get("Replace") or []:
    new = r["New"]["Path"]
    if new.startswith(("./", "../")) and not os.path.exists(os.path.join(new, "go.mod")):
        os.makedirs(new, exist_ok=True)
        with open(os.path.join(new, "go.mod"), "w") as f:
            f.write("module %s\n" % r["Old"]["Path"])
        print("stubbed missing local replacement", new)
' || exit 1
    go build -trimpath -o "$bin.tmp.$$" . || exit 1
    mv "$bin.tmp.$$" "$bin" || exit 1
  ) >>"$log" 2>&1 </dev/null; then
    rm -rf "$work" "$bin.tmp.$$"
    fail resonate "could not build $RESONATE_MODULE@$RESONATE_VERSION"
  fi
  rm -rf "$work"
  RESONATE_BIN="$bin"
  say "resonate: built $RESONATE_VERSION in $(since "$t") ($bin)"
}

resonate_init() {
  local dir="$SVC/resonate"
  rm -rf "$dir"; mkdir -p "$dir"
  : >"$dir/resonate.yaml"   # the explicit empty config resonate_cmd passes
  free_port RESONATE_API_PORT; free_port RESONATE_POLL_PORT; free_port RESONATE_METRICS_PORT
  RESONATE_STORE_KIND="${SERVICES_RESONATE_STORE:-sqlite}"
  RESONATE_PG_PORT=""
  case "$RESONATE_STORE_KIND" in
    sqlite) ;;
    postgres)
      (load_state postgres && [[ "$POSTGRES_EXTERNAL" == 0 ]]) 2>/dev/null \
        || fail resonate "SERVICES_RESONATE_STORE=postgres needs the PostgreSQL started by this script (unset DATABASE_URL)"
      RESONATE_PG_PORT=$(load_state postgres && echo "$PG_PORT")
      # fresh store per up, like the SQLite file
      local out
      out=$(load_state postgres && pg_psql <<EOF 2>&1
DROP DATABASE IF EXISTS $PG_RESONATE_DB WITH (FORCE);
CREATE DATABASE $PG_RESONATE_DB OWNER $PG_USER;
EOF
      ) || fail resonate "could not reset database $PG_RESONATE_DB: $out" ;;
    *) fail resonate "SERVICES_RESONATE_STORE must be sqlite or postgres, not '$RESONATE_STORE_KIND'" ;;
  esac
  RESONATE_EXTERNAL=0
  RESONATE_AUTH_USER=record-deleter
  RESONATE_AUTH_PASSWORD=$(openssl rand -hex 16)
  write_state resonate RESONATE_EXTERNAL RESONATE_BIN RESONATE_API_PORT RESONATE_POLL_PORT \
    RESONATE_METRICS_PORT RESONATE_STORE_KIND RESONATE_PG_PORT RESONATE_AUTH_USER RESONATE_AUTH_PASSWORD
}

# resonate_cmd BIN DIR API_PORT POLL_PORT METRICS_PORT [PG_HOST PG_PORT PG_USER PG_PASSWORD PG_DB]
# -> RESONATE_CMD: the server's command line (the only place its flags are written, but for
# docker-compose.yml). DIR holds its (empty) config file and, without PG_*, its SQLite store.
resonate_cmd() {
  local bin="$1" dir="$2" api="$3" poll="$4" metrics="$5"
  RESONATE_CMD=("$bin" serve
    --config "$dir/resonate.yaml"   # explicit empty config: never ./resonate.yaml or ~/resonate.yaml
    --api-http-addr "127.0.0.1:$api"
    --system-url "http://127.0.0.1:$api"
    --aio-poll-addr "127.0.0.1:$poll"
    --api-grpc-enable=false
    --metrics-addr "127.0.0.1:$metrics"
    --api-http-timeout 2s
    --aio-poll-timeout 1s
    # a task sent to a worker that died before claiming it is re-sent after this (default 1m)
    --aio-poll-ttc "${SERVICES_RESONATE_POLL_TTC:-10s}"
    --log-level "${SERVICES_RESONATE_LOG_LEVEL:-info}")
  if [[ -n "${RESONATE_CMD_AUTH:-}" ]]; then   # USER:PASSWORD -> basic auth on the API and the poll port
    RESONATE_CMD+=(--api-http-auth "${RESONATE_CMD_AUTH%%:*}=${RESONATE_CMD_AUTH#*:}"
      --aio-poll-auth "${RESONATE_CMD_AUTH%%:*}=${RESONATE_CMD_AUTH#*:}")
  fi
  if (($# > 5)); then
    RESONATE_CMD+=(--aio-store-sqlite-enable=false
      --aio-store-postgres-enable
      --aio-store-postgres-host "$6"
      --aio-store-postgres-port "$7"
      --aio-store-postgres-username "$8"
      --aio-store-postgres-password "$9"
      --aio-store-postgres-database "${10}"
      --aio-store-postgres-query sslmode=disable)
  else
    # WAL with synchronous=NORMAL: the durability record-deleter gives its own SQLite database
    # (src/adapters/sql_engine.py), instead of the driver's rollback journal and an fsync per commit
    RESONATE_CMD+=(--aio-store-sqlite-path "$dir/resonate.db${SERVICES_RESONATE_SQLITE_QUERY-?_journal_mode=WAL&_synchronous=NORMAL}")
  fi
}

resonate_launch() {
  local dir="$SVC/resonate" log pg=()
  log=$(logf resonate)
  if [[ "$RESONATE_STORE_KIND" == postgres ]]; then
    pg=(127.0.0.1 "$RESONATE_PG_PORT" "$PG_USER" "$PG_PASSWORD" "$PG_RESONATE_DB")
  fi
  RESONATE_CMD_AUTH="$RESONATE_AUTH_USER:$RESONATE_AUTH_PASSWORD" \
    resonate_cmd "$RESONATE_BIN" "$dir" "$RESONATE_API_PORT" "$RESONATE_POLL_PORT" "$RESONATE_METRICS_PORT" "${pg[@]}"
  local cmd=("${RESONATE_CMD[@]}")
  printf '\n== %s\n' "start $(date -Is): ${cmd[*]}" >>"$log"
  printf '%q ' "${cmd[@]}" | sed "s/$RESONATE_AUTH_PASSWORD/***/g" >"$SVC/resonate.cmd"; echo >>"$SVC/resonate.cmd"
  (cd "$dir" && exec setsid "${cmd[@]}") >>"$log" 2>&1 </dev/null 9>&- &
  echo $! >"$(pidf resonate)"
}

# resonate-cmd: print a private server's command line, one argument a line (see the header).
cmd_resonate_cmd() {
  local dir="" api="" poll="" metrics="" pgurl="" bin="${SERVICES_RESONATE_BIN:-}" pg=() a auth=""
  while (($#)); do
    case "$1" in
      --dir | --api | --poll | --metrics | --postgres | --bin | --auth)
        [[ $# -ge 2 ]] || { say "resonate-cmd: $1 needs a value"; exit 2; }
        case "$1" in
          --dir) dir="$2" ;; --api) api="$2" ;; --poll) poll="$2" ;; --metrics) metrics="$2" ;;
          --postgres) pgurl="$2" ;; --bin) bin="$2" ;; --auth) auth="$2" ;;
        esac
        shift 2 ;;
      *) say "resonate-cmd: unknown argument '$1'"; exit 2 ;;
    esac
  done
  [[ -n "$dir" && -n "$api" && -n "$poll" ]] || { say "resonate-cmd: --dir, --api and --poll are required"; exit 2; }
  for a in "$api" "$poll" "$metrics"; do
    [[ -z "$a" || "$a" =~ ^[0-9]+$ ]] || { say "resonate-cmd: '$a' is not a port"; exit 2; }
  done
  [[ -n "$metrics" ]] || free_port metrics
  [[ -n "$bin" ]] || bin="$CACHE/bin/resonate-$RESONATE_VERSION"
  [[ -x "$bin" ]] || { say "resonate-cmd: no server binary at $bin (run 'scripts/services.sh up resonate' once, or pass --bin)"; exit 1; }
  if [[ -n "$pgurl" ]]; then
    mapfile -t pg < <(python3 -c '
import sys, urllib.parse as u
p = u.urlsplit(sys.argv[1])
if not p.scheme.startswith("postgres") or not p.hostname or not p.path.strip("/"):
    sys.exit(1)
for v in (p.hostname, p.port or 5432, u.unquote(p.username or ""), u.unquote(p.password or ""), p.path.strip("/")):
    print(v)' "$pgurl") && ((${#pg[@]} == 5)) \
      || { say "resonate-cmd: --postgres must be postgresql://USER:PASSWORD@HOST:PORT/DB"; exit 2; }
  fi
  mkdir -p "$dir"
  [[ -f "$dir/resonate.yaml" ]] || : >"$dir/resonate.yaml"
  [[ -z "$auth" || "$auth" == ?*:?* ]] || { say "resonate-cmd: --auth must be USER:PASSWORD"; exit 2; }
  RESONATE_CMD_AUTH="$auth" resonate_cmd "$bin" "$(cd "$dir" && pwd)" "$api" "$poll" "$metrics" "${pg[@]}"
  printf '%s\n' "${RESONATE_CMD[@]}"
}

resonate_wait() {
  local pid deadline code t
  t=$(t0)
  pid=$(cat "$(pidf resonate)")
  deadline=$((SECONDS + READY_TIMEOUT))
  while :; do
    pid_alive "$pid" || fail resonate "server process exited during startup"
    code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' -u "$RESONATE_AUTH_USER:$RESONATE_AUTH_PASSWORD" \
      "http://127.0.0.1:$RESONATE_API_PORT/promises?id=*&limit=1" 2>/dev/null || true)
    if [[ "$code" == 200 ]] && port_open "$RESONATE_POLL_PORT"; then break; fi
    ((SECONDS < deadline)) || fail resonate "GET /promises on 127.0.0.1:$RESONATE_API_PORT not 200 after ${READY_TIMEOUT}s (last: ${code:-none})"
    sleep 0.1
  done
  say "resonate: $RESONATE_VERSION ($RESONATE_STORE_KIND store) ready: api http://127.0.0.1:$RESONATE_API_PORT, poll :$RESONATE_POLL_PORT in $(since "$t")"
}

# ================================================================== POSTGRES
pg_provision() {
  local d
  if [[ -n "${PG_BIN:-}" ]]; then
    PG_BIN_DIR="$PG_BIN"
  else
    PG_BIN_DIR=""
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V); do
      [[ -x "$d/initdb" && -x "$d/postgres" ]] && PG_BIN_DIR="$d"
    done
    if [[ -z "$PG_BIN_DIR" && $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
      say "postgres: server binaries missing; installing Debian's postgresql (no cluster created, none started) ..."
      mkdir -p /etc/postgresql-common
      [[ -f /etc/postgresql-common/createcluster.conf ]] \
        || echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
      { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
          -o Dpkg::Options::=--force-confold postgresql; } >>"$(logf postgres)" 2>&1 \
        || fail postgres "apt-get install postgresql failed"
      for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V); do
        [[ -x "$d/initdb" && -x "$d/postgres" ]] && PG_BIN_DIR="$d"
      done
    fi
  fi
  [[ -n "$PG_BIN_DIR" && -x "$PG_BIN_DIR/initdb" ]] || fail postgres "no PostgreSQL server binaries (set PG_BIN)"
  id postgres >/dev/null 2>&1 || fail postgres "user 'postgres' does not exist"
}

as_pg() { (cd / && runuser -u postgres -- "$@"); }

pg_init() {
  local log t
  log=$(logf postgres); t=$(t0)
  PG_TMP=$(mktemp -d "${TMPDIR:-/tmp}/record-deleter-pg.XXXXXX")
  chmod 700 "$PG_TMP"; chown postgres:postgres "$PG_TMP"
  free_port PG_PORT
  POSTGRES_EXTERNAL=0
  PG_TLS_PASSWORD=$(openssl rand -hex 16)
  write_state postgres POSTGRES_EXTERNAL PG_BIN_DIR PG_TMP PG_PORT PG_TLS_PASSWORD
  printf '\n== %s\n' "initdb $(date -Is)" >>"$log"
  as_pg "$PG_BIN_DIR/initdb" -D "$PG_TMP/data" -U postgres --auth-local=trust \
    --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 --no-sync >>"$log" 2>&1 </dev/null \
    || fail postgres "initdb failed"
  cat >>"$PG_TMP/data/postgresql.conf" <<EOF

# --- scripts/services.sh: throwaway test cluster
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_TMP'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
# TLS with a certificate for 127.0.0.1/localhost signed by the test CA ($SVC/tls/ca.pem): clients
# may use it (sslmode=verify-full); the role $PG_TLS_USER may connect over TLS only (pg_hba below)
ssl = on
ssl_cert_file = '$PG_TMP/server.crt'
ssl_key_file = '$PG_TMP/server.key'
EOF
  tls_cert postgres 127.0.0.1 serverAuth
  install -o postgres -g postgres -m 644 "$SVC/tls/postgres.pem" "$PG_TMP/server.crt"
  install -o postgres -g postgres -m 600 "$SVC/tls/postgres.key" "$PG_TMP/server.key"
  { printf '# scripts/services.sh: %s connects over TLS or not at all\n' "$PG_TLS_USER"
    printf 'hostnossl all %s 0.0.0.0/0 reject\n' "$PG_TLS_USER"
    cat "$PG_TMP/data/pg_hba.conf"; } >"$PG_TMP/pg_hba.tmp"
  install -o postgres -g postgres -m 600 "$PG_TMP/pg_hba.tmp" "$PG_TMP/data/pg_hba.conf"
  rm -f "$PG_TMP/pg_hba.tmp"
}

pg_launch() {
  local log
  log=$(logf postgres)
  local cmd=(setpriv --reuid=postgres --regid=postgres --init-groups -- "$PG_BIN_DIR/postgres" -D "$PG_TMP/data")
  printf '\n== %s\n' "start $(date -Is): ${cmd[*]}" >>"$log"
  (cd "$PG_TMP" && exec setsid "${cmd[@]}") >>"$log" 2>&1 </dev/null 9>&- &
  echo $! >"$(pidf postgres)"
}

# shellcheck disable=SC2120
pg_psql() { # [psql args] as superuser over the unix socket
  psql -X -q -v ON_ERROR_STOP=1 -h "$PG_TMP" -p "$PG_PORT" -U postgres -d postgres "$@"
}

pg_wait() { # [full]: also create role + databases
  local full="${1:-}" pid deadline t out
  t=$(t0)
  pid=$(cat "$(pidf postgres)")
  deadline=$((SECONDS + READY_TIMEOUT))
  until pg_isready -q -h 127.0.0.1 -p "$PG_PORT" -t 1 >/dev/null 2>&1; do
    pid_alive "$pid" || fail postgres "postmaster exited during startup"
    ((SECONDS < deadline)) || fail postgres "pg_isready on 127.0.0.1:$PG_PORT failed for ${READY_TIMEOUT}s"
    sleep 0.1
  done
  if [[ "$full" == full ]]; then
    out=$(pg_psql <<EOF 2>&1
CREATE ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
CREATE DATABASE $PG_DB OWNER $PG_USER;
CREATE DATABASE $PG_RESONATE_DB OWNER $PG_USER;
CREATE ROLE $PG_TLS_USER LOGIN PASSWORD '$PG_TLS_PASSWORD' IN ROLE $PG_USER;
EOF
    ) || fail postgres "creating role/databases failed: $out"
  fi
  out=$(PGPASSWORD="$PG_PASSWORD" psql -X -qAt -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" \
    -c 'select 1' 2>&1) && [[ "$out" == 1 ]] || fail postgres "select 1 as $PG_USER failed: $out"
  say "postgres: ready at 127.0.0.1:$PG_PORT (db $PG_DB, user $PG_USER, data $PG_TMP) in $(since "$t")"
}

pg_stop() { # [kill]
  local how="${1:-}" pid
  pid=$(service_pid postgres) || return 0
  if [[ "$how" == kill ]]; then
    kill_pid "$pid" KILL
  else
    as_pg "$PG_BIN_DIR/pg_ctl" stop -D "$PG_TMP/data" -m fast -w -t "${STOP_WAIT:-$STOP_TIMEOUT}" >>"$(logf postgres)" 2>&1 \
      || true
    kill_pid "$pid" TERM
  fi
}

# ============================================================ orchestration
set_external() {
  case "$1" in
    kafka)
      KAFKA_EXTERNAL=1; KAFKA_EXT_BOOTSTRAP="$BROKER_BOOTSTRAP_SERVERS"
      write_state kafka KAFKA_EXTERNAL KAFKA_EXT_BOOTSTRAP
      say "kafka: external, BROKER_BOOTSTRAP_SERVERS=$KAFKA_EXT_BOOTSTRAP (not started)" ;;
    resonate)
      RESONATE_EXTERNAL=1; RESONATE_EXT_URL="$RESONATE_URL"
      RESONATE_EXT_MSG_PORT="$RESONATE_MESSAGE_SOURCE_PORT"
      write_state resonate RESONATE_EXTERNAL RESONATE_EXT_URL RESONATE_EXT_MSG_PORT
      say "resonate: external, RESONATE_URL=$RESONATE_EXT_URL RESONATE_MESSAGE_SOURCE_PORT=$RESONATE_EXT_MSG_PORT (not started)" ;;
    postgres)
      POSTGRES_EXTERNAL=1; POSTGRES_EXT_URL="$DATABASE_URL"
      write_state postgres POSTGRES_EXTERNAL POSTGRES_EXT_URL
      say "postgres: external, DATABASE_URL=$(mask_url "$DATABASE_URL") (not started)" ;;
  esac
}

# start_service NAME [fresh]: launch + wait. fresh = new data (used by up).
start_service() {
  local s="$1" fresh="${2:-}"
  CURRENT="$s"
  load_state "$s" || fail "$s" "no state: run 'scripts/services.sh up $s' first"
  local ext="${s^^}_EXTERNAL"
  [[ "${!ext}" == 0 ]] || { say "$s: external, nothing to start"; return 0; }
  if service_pid "$s" >/dev/null; then say "$s: already running (pid $(service_pid "$s"))"; return 0; fi
  case "$s" in
    kafka) kafka_launch; [[ -n "$fresh" ]] || kafka_wait ;;   # fresh: waited for at the end of up
    resonate) resonate_launch; resonate_wait ;;
    postgres) pg_launch; pg_wait "$fresh" ;;
  esac
}

# stop_service NAME [kill]: stop the process, keep port + data.
stop_service() {
  local s="$1" how="${2:-}" pid t
  t=$(t0)
  load_state "$s" 2>/dev/null || true
  if [[ "$s" == postgres && -n "${PG_TMP:-}" ]]; then
    pg_stop "$how"
  elif pid=$(service_pid "$s"); then
    kill_pid "$pid" "$([[ "$how" == kill ]] && echo KILL || echo TERM)" \
      || { say "$s: could not stop pid $pid"; return 1; }
  else
    return 0
  fi
  rm -f "$(pidf "$s")"
  [[ "${3:-}" == quiet ]] || say "$s: stopped in $(since "$t")"
}

# down_service NAME [quiet]: stop and remove data + state.
down_service() {
  local s="$1"
  STOP_WAIT="$DOWN_TIMEOUT" stop_service "$s" "" "${2:-}" || true
  (
    load_state "$s" 2>/dev/null || true
    case "$s" in
      kafka) rm -rf "$SVC/kafka" ;;
      resonate) rm -rf "$SVC/resonate" "$SVC/resonate.cmd" ;;
      postgres)
        if [[ -n "${PG_TMP:-}" && "$PG_TMP" == */record-deleter-pg.* && -d "$PG_TMP" ]]; then
          rm -rf "$PG_TMP"
        fi ;;
    esac
  )
  rm -f "$(pidf "$s")" "$(statef "$s")"
}

validate_names() {
  local s
  for s in "$@"; do
    case "$s" in kafka | resonate | postgres) ;; *) say "unknown service '$s' (kafka|resonate|postgres)"; exit 2 ;; esac
  done
}

ordered() { # print requested names in dependency order
  local s r
  for s in "${ALL_SERVICES[@]}"; do for r in "$@"; do [[ "$r" == "$s" ]] && echo "$s" && break; done; done
}

# The headless browser of tests/system/test_dashboard.py (Debian's chromium, driven by Playwright
# from .venv): not a service, but the suite needs it and a fresh CI machine has none. Installed
# once with apt-get (as root, like postgresql above); skipped when `chromium` is on PATH.
ensure_chromium() {
  command -v chromium >/dev/null 2>&1 && return 0
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    say "chromium: missing; installing Debian's chromium for the dashboard's browser test ..."
    mkdir -p "$SVC"
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        chromium; } >>"$SVC/chromium.log" 2>&1 \
      || { say "chromium: apt-get install chromium failed (log: $SVC/chromium.log)"; exit 1; }
    say "chromium: installed ($(chromium --version 2>/dev/null || echo '?'))"
  else
    say "chromium: missing and not installable here (needs root and apt-get); install it, or the" \
      "dashboard's browser test fails"
  fi
}

cmd_up() {
  local want=("$@") s t_all t list=()
  ensure_chromium
  ((${#want[@]})) || want=("${ALL_SERVICES[@]}")
  validate_names "${want[@]}"
  if [[ " ${want[*]} " == *" resonate "* && "${SERVICES_RESONATE_STORE:-sqlite}" == postgres \
        && " ${want[*]} " != *" postgres "* ]] && ! external_for resonate; then
    say "resonate: SERVICES_RESONATE_STORE=postgres, so postgres comes up too"
    want+=(postgres)
  fi
  mapfile -t list < <(ordered "${want[@]}")
  t_all=$(t0)
  local kafka_pending=0
  for s in "${list[@]}"; do
    CURRENT="$s"
    if external_for "$s"; then
      if [[ "$s" == postgres && "$DATABASE_URL" != postgresql* ]]; then
        fail postgres "DATABASE_URL is set to $(mask_url "$DATABASE_URL"), not a postgresql URL: unset it to start PostgreSQL here, or point it at the PostgreSQL to use"
      fi
      down_service "$s" quiet
      set_external "$s"; continue
    fi
    if service_pid "$s" >/dev/null && load_state "$s" && v="${s^^}_EXTERNAL" && [[ "${!v}" == 0 ]]; then
      say "$s: already running (pid $(service_pid "$s")), keeping it"; continue
    fi
    down_service "$s" quiet           # stale state from an earlier run
    : >"$(logf "$s")"
    t=$(t0)
    case "$s" in
      postgres) pg_provision; pg_init; STARTED_NOW+=(postgres); start_service postgres full ;;
      resonate) resonate_provision; resonate_init; STARTED_NOW+=(resonate); start_service resonate full ;;
      kafka)    # slowest to boot: launch it now, check it after the others
        kafka_provision; kafka_init; STARTED_NOW+=(kafka); start_service kafka full; kafka_pending=1
        say "kafka: provisioned + formatted + launched in $(since "$t"); readiness checked after the others" ;;
    esac
    [[ "$s" == kafka ]] || say "$s: up in $(since "$t") (provision + start + ready)"
    write_env
  done
  if [[ "$kafka_pending" != 0 ]]; then
    CURRENT=kafka; load_state kafka; kafka_wait full
  fi
  CURRENT=""
  write_env
  STARTED_NOW=()
  say "up done in $(since "$t_all"); env: ${SVC#"$REPO"/}/env"
  sed -n 's/^export /[services]   /p' "$SVC/env" \
    | sed -e 's/PASSWORD=[^ ]*/PASSWORD=***/' -e 's#\(://[^:/@]*:\)[^@]*@#\1***@#' >&2
}

cmd_down() {
  local want=("$@") s
  ((${#want[@]})) || want=("${ALL_SERVICES[@]}")
  validate_names "${want[@]}"
  [[ -d "$SVC" ]] || { say "nothing to stop"; return 0; }
  for s in kafka resonate postgres; do
    [[ " ${want[*]} " == *" $s "* ]] || continue
    if [[ -f "$(statef "$s")" || -f "$(pidf "$s")" ]]; then
      down_service "$s"
    fi
  done
  # leftovers of an up that died before writing state
  if [[ " ${want[*]} " == *" kafka "* ]]; then rm -rf "$SVC/kafka"; fi
  if [[ " ${want[*]} " == *" resonate "* ]]; then rm -rf "$SVC/resonate" "$SVC/resonate.cmd"; fi
  if compgen -G "$SVC/*.state" >/dev/null; then write_env; else rm -f "$SVC/env"; rm -rf "$SVC/tls"; fi
  say "down done"
}

cmd_status() {
  local s pid
  for s in "${ALL_SERVICES[@]}"; do
    if ! (load_state "$s") 2>/dev/null; then echo "$s: not provisioned"; continue; fi
    if (load_state "$s"; v="${s^^}_EXTERNAL"; [[ "${!v}" == 1 ]]); then echo "$s: external"; continue; fi
    if pid=$(service_pid "$s"); then echo "$s: running (pid $pid)"; else echo "$s: stopped"; fi
  done
  [[ -f "$SVC/env" ]] && sed -n 's/^export /  /p' "$SVC/env"
  return 0
}

main() {
  local action="${1:-}"; shift || true
  case "$action" in up | down | stop | start | restart | restart-resonate | status | env) ;;
    resonate-cmd) cmd_resonate_cmd "$@"; return 0 ;;   # no state dir, no lock
    *) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
  esac
  mkdir -p "$SVC"
  [[ -f "$SVC/.gitignore" ]] || echo '*' >"$SVC/.gitignore"
  exec 9>"$SVC/.lock"
  flock -w 900 9 || { say "another services.sh holds $SVC/.lock"; exit 1; }
  case "$action" in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    stop | start | restart)
      [[ $# -ge 1 ]] || { say "usage: $0 $action kafka|resonate|postgres [--kill]"; exit 2; }
      local name="$1" how=""
      if [[ "${2:-}" == --kill ]]; then how="kill"; fi
      validate_names "$name"
      [[ -f "$(statef "$name")" ]] || { say "$name: not provisioned; run '$0 up $name' first"; exit 1; }
      if [[ "$action" != start ]]; then CURRENT="$name"; stop_service "$name" "$how"; fi
      if [[ "$action" != stop ]]; then start_service "$name"; fi
      CURRENT="" ;;
    restart-resonate)
      [[ -f "$(statef resonate)" ]] || { say "resonate: not provisioned; run '$0 up resonate' first"; exit 1; }
      CURRENT=resonate; stop_service resonate; start_service resonate; CURRENT="" ;;
    status) cmd_status ;;
    env) cat "$SVC/env" ;;
  esac
}

main "$@"
