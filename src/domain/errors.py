"""Domain errors: what went wrong, in words a person can act on."""


class DomainError(Exception):
    """Base of every error the domain raises on purpose."""


class InvalidRecordId(DomainError, ValueError):
    """A record id is empty, too long or contains characters outside the allowed set."""


class PoisonMessage(DomainError):
    """A request message that can never be processed; it belongs on the dead-letter topic."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RecordStoreUnavailable(DomainError):
    """The database could not be reached or the batch failed transiently; the step retries."""


class DeletionPlanInvalid(DomainError):
    """The deletion plan names a table or column that does not exist: retrying cannot help."""


class DeletionRejected(DomainError):
    """The database refused a delete (e.g. a constraint: the plan purges a parent before a child):
    retrying cannot help; the attempt fails with this reason."""


class PublishFailed(DomainError):
    """A completion was not confirmed by the broker; the step retries."""


class HandOffUnavailable(DomainError):
    """The durable runtime could not create the workflow (e.g. the Resonate server is down)."""


class BrokerUnavailable(DomainError):
    """The message broker cannot be reached (or a dead-letter write was not confirmed)."""


class BrokerRefused(BrokerUnavailable):
    """The brokers refused this client's credentials: a setting to fix, not an outage to wait out."""


class MessageTooLarge(BrokerUnavailable):
    """The broker refuses a message this big (Kafka: message.max.bytes); retrying cannot help."""


class RuntimeStopped(DomainError):
    """The durable runtime stopped itself (e.g. after a store error); this process must exit."""


# Retrying cannot fix these: an attempt that meets one fails at once (and says why).
PERMANENT_ERRORS: tuple[type[DomainError], ...] = (DeletionPlanInvalid, DeletionRejected, InvalidRecordId)
