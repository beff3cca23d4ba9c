"""``server.listen`` takes IPv4, host names and bracketed IPv6 (issue 17, item 2), and the banner
turns it into the address a person opens."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from exporter.banner import base_url
from exporter.config import Config
from exporter.server import split_listen


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [
        ("0.0.0.0:9108", "0.0.0.0", 9108),
        ("127.0.0.1:9108", "127.0.0.1", 9108),
        ("localhost:9108", "localhost", 9108),
        ("[::]:9108", "::", 9108),
        ("[::1]:9108", "::1", 9108),
        ("[fe80::1%eth0]:9108", "fe80::1%eth0", 9108),
        (":9108", "0.0.0.0", 9108),
    ],
)
def test_accepted_listen_addresses(listen: str, host: str, port: int) -> None:
    config = Config.model_validate({"server": {"listen": listen}})
    assert split_listen(config.server.listen) == (host, port)


@pytest.mark.parametrize("listen", ["::1:9108", "::9108", "[::1:9108", "::1]:9108", "[1.2.3.4]:9108", "[::]:", "[::]"])
def test_refused_listen_addresses(listen: str) -> None:
    with pytest.raises(ValidationError):
        Config.model_validate({"server": {"listen": listen}})


@pytest.mark.parametrize(
    ("listen", "scheme", "url"),
    [
        ("0.0.0.0:9108", "http", "http://localhost:9108"),
        ("[::]:9108", "https", "https://localhost:9108"),
        ("[::1]:9108", "http", "http://[::1]:9108"),
        ("127.0.0.1:19108", "http", "http://127.0.0.1:19108"),
    ],
)
def test_the_banner_says_where_to_look(listen: str, scheme: str, url: str) -> None:
    assert base_url(listen, scheme) == url
