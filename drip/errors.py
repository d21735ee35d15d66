"""The errors drip's domain raises. They know nothing about HTTP or exit codes:
the web layer, the CLI and the actors each map them to their own answer."""


class DripError(Exception):
    """Base of every error drip raises on purpose."""


class ConfigError(DripError):
    """A DRIP_* variable holds a value drip cannot use; the message names it."""


class InvalidInput(DripError):
    """Input from a visitor, an admin or a file was refused; nothing was changed."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotFound(DripError):
    """The thing asked for does not exist (an unknown series, subscriber or delivery)."""


class BadToken(DripError):
    """A signed link was tampered with, was made for another purpose, or names nothing."""


class ExpiredToken(BadToken):
    """A signed link was genuine but is past its age limit."""


class Unverified(DripError):
    """A request could not be proven to come from whom it claims (a webhook without a
    valid signature or secret); nothing was changed."""


class TemplateProblem(InvalidInput):
    """A lesson template fails to compile or render in the sandbox."""


class TransportError(DripError):
    """Sending failed. `permanent`: trying again cannot help. `bounce`: the address itself
    was refused, so nothing more should be sent to it."""

    def __init__(self, message: str, *, permanent: bool, bounce: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.bounce = bounce
