"""Errors the datastore raises; every caller can tell 'try again' from 'you asked wrong'."""


class DatastoreError(Exception):
    """Base of every datastore failure."""


class NotFound(DatastoreError):
    """The resource or key does not exist."""


class AlreadyExists(DatastoreError):
    """Create of something that exists."""


class Conflict(DatastoreError):
    """A compare-and-swap lost: someone changed the key since it was read."""


class Unavailable(DatastoreError):
    """etcd did not answer (down, unreachable, or timed out): try again later."""
