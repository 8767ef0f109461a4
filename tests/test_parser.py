from coopbot.parser import CommandParser, strip_reply_fallback

parser = CommandParser("!", "@coopbot:example.org", display_name="Co-op Bot")


def test_prefix_command_with_words() -> None:
    parsed = parser.parse("!deploy blog.example.org 1.2.0")
    assert parsed is not None
    assert parsed.name == "deploy"
    assert parsed.words == ("blog.example.org", "1.2.0")


def test_command_name_is_case_insensitive() -> None:
    parsed = parser.parse("!PING")
    assert parsed is not None and parsed.name == "ping"


def test_mentions_by_localpart_mxid_and_display_name() -> None:
    for body in ("coopbot: ping", "@coopbot:example.org: ping", "Co-op Bot, ping", "COOPBOT: ping"):
        parsed = parser.parse(body)
        assert parsed is not None, body
        assert parsed.name == "ping"


def test_plain_chat_is_not_a_command() -> None:
    for body in ("hello there", "coopbot is great", "! deploy", "!", "", "someone: ping"):
        assert parser.parse(body) is None, body


def test_quoted_words_stay_together() -> None:
    parsed = parser.parse('!deny 3 "not during the AGM"')
    assert parsed is not None
    assert parsed.words == ("3", "not during the AGM")


def test_unbalanced_quote_falls_back_to_plain_words() -> None:
    parsed = parser.parse("!deny 3 it's late")
    assert parsed is not None
    assert parsed.words == ("3", "it's", "late")


def test_reply_fallback_is_stripped_before_parsing() -> None:
    body = "> <@alice:example.org> !undeploy blog\n> second line\n\n!ping"
    assert strip_reply_fallback(body) == "!ping"
    parsed = parser.parse(body)
    assert parsed is not None and parsed.name == "ping"


def test_quoted_command_in_a_reply_is_not_run() -> None:
    body = "> <@alice:example.org> !undeploy blog\n\nno way"
    assert parser.parse(body) is None


def test_other_prefix() -> None:
    dot = CommandParser(".", "@bot:x")
    parsed = dot.parse(".help deploy")
    assert parsed is not None and parsed.name == "help" and parsed.words == ("deploy",)
    assert dot.parse("!help") is None
