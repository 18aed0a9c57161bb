"""What the worker writes to its output topics, written once over the `TopicWriter` port.

The broker adapters (Kafka, in-memory) only write bytes to a topic; encoding, the choice of
topic and what to do with a message too big for the broker live here, so every broker behaves
the same.
"""

from __future__ import annotations

from .errors import BrokerUnavailable, MessageTooLarge, PublishFailed
from .evidence import Delivery
from .messages import OutboundMessage, encode_answer
from .model import Answer
from .ports import CompletionPublisher, DeadLetterSink, TopicWriter


class TopicCompletionPublisher(CompletionPublisher):
    """Completions to one topic, permanent failures to another."""

    def __init__(self, writer: TopicWriter, completion_topic: str, failure_topic: str) -> None:
        self._writer = writer
        self._completion_topic = completion_topic
        self._failure_topic = failure_topic

    def publish(self, answer: Answer) -> Delivery:
        topic = self._completion_topic if answer.deleted else self._failure_topic
        try:
            return self._writer.write(topic, encode_answer(answer))
        except BrokerUnavailable as exc:
            raise PublishFailed(str(exc)) from exc


class TopicDeadLetterSink(DeadLetterSink):
    """Poison messages to the dead-letter topic; one too big for it is truncated, never dropped.

    A message the broker refuses by size must not stop the worker (its offset could never be
    committed): its first `truncate_to` bytes go instead, with a `dlq-truncated-from` header
    giving the original size; the other headers still name its topic, partition and offset.
    """

    def __init__(self, writer: TopicWriter, topic: str, *, truncate_to: int) -> None:
        self._writer = writer
        self._topic = topic
        self._truncate_to = truncate_to

    def send(self, message: OutboundMessage) -> None:
        try:
            self._writer.write(self._topic, message)
        except MessageTooLarge:
            truncated = OutboundMessage(
                key=message.key,
                value=message.value[: self._truncate_to],
                headers=(*message.headers, ("dlq-truncated-from", str(len(message.value)).encode())),
            )
            self._writer.write(self._topic, truncated)
