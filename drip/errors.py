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


class Stale(InvalidInput):
    """An admin acted on a page that no longer shows what is stored: the form was sent
    twice (a double click, a reload), or another admin changed the same thing since the
    page was shown. Acting anyway would add a lesson twice, move one two places, or undo
    the other admin's save without a word; nothing was changed."""


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
    was refused, so nothing more should be sent to it. `throttled`: the relay asked us to
    slow down (421, or a 4xx about rates), so every worker should. `domain_throttled`:
    the recipient's domain did (Gmail's 4.7.28), so nobody there gets mail for a while.
    `ambiguous`: the whole message went out but no reply came back, so the relay may have
    accepted it and trying again may deliver it twice."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        bounce: bool = False,
        throttled: bool = False,
        domain_throttled: bool = False,
        ambiguous: bool = False,
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.bounce = bounce
        self.throttled = throttled
        self.domain_throttled = domain_throttled
        self.ambiguous = ambiguous


class NoSendingSlot(TransportError):
    """No slot of the shared sending rate came free in time, the recipient's domain has
    every slot taken (drip.domain_slots), or Redis could not be asked: nothing reached
    the relay, so this is a postponement, not a failed attempt."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, permanent=False)
        self.retry_after = retry_after
