from tests.helpers import System


def test_signup_confirm_and_welcome(system: System) -> None:
    system.signup("ana@example.com", timezone="Europe/Berlin", first_name="Ana")
    system.drain()
    assert len(system.smtp.to("ana@example.com")) == 1
    system.confirm("ana@example.com")
    system.drain()
    msgs = system.smtp.to("ana@example.com")
    assert len(msgs) == 2
    print(msgs[1]["Subject"], msgs[1]["List-Unsubscribe"])
