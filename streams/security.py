"""Kafka TLS and SASL: the ``kafka.security`` config section, mapped once for every client.

logfog talks to Kafka through three client libraries: Faust (the worker's consumer and
producer, via aiokafka), aiokafka settings directly, and kafka-python (topic admin, the
shipper, the key ring, checkpoint reads). Each spells the same settings differently;
this module is the only place that knows the spellings, so a new client cannot forget
TLS or SASL.

Secrets never sit in the config: ``username`` and ``password`` are references,
``env:NAME`` or ``file:PATH`` (a mounted Kubernetes Secret), resolved at startup. A
literal password is refused when the config is loaded.

>>> sec = KafkaSecurity("SASL_SSL", mechanism="SCRAM-SHA-512", username="logfog",
...                     password="s3cret")
>>> sorted(kafka_python_settings(sec))  # doctest: +NORMALIZE_WHITESPACE
['sasl_mechanism', 'sasl_plain_password', 'sasl_plain_username', 'security_protocol',
 'ssl_check_hostname']
>>> sec  # the password never appears in a repr (logs, tracebacks)
KafkaSecurity(protocol='SASL_SSL', mechanism='SCRAM-SHA-512', username='logfog', password=***)
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
WHERE = "kafka.security"


class KafkaSecurityError(Exception):
    """A credential reference cannot be resolved (message names the config key)."""


def _is_reference(value: str) -> bool:
    return value.startswith(("env:", "file:")) and len(value.split(":", 1)[1]) > 0


def problems(section: Mapping[str, Any]) -> list[str]:
    """Every problem in a (type-checked) ``kafka.security`` section, with its place.

    >>> problems({"protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "username": "u",
    ...           "password": "hunter2"})  # doctest: +ELLIPSIS
    ['kafka.security.password: a literal password is refused; ...']
    >>> problems({"protocol": "PLAINTEXT"})
    []
    """
    return [message for _, message in problems_by_key(section)]


def problems_by_key(section: Mapping[str, Any]) -> list[tuple[frozenset[str], str]]:
    """:func:`problems`, each with the keys it is about (the config check leaves out
    the problems about keys that already have a type error of their own).

    >>> [(keys, text)] = problems_by_key({"protocol": "SSL", "cert_file": "c.pem"})
    >>> sorted(keys), text[:40]
    (['cert_file', 'key_file'], 'kafka.security: cert_file and key_file g')
    """
    protocol = section.get("protocol", "PLAINTEXT")
    out: list[tuple[frozenset[str], str]] = []

    def problem(keys: tuple[str, ...], message: str) -> None:
        out.append((frozenset(keys), message))

    # An unknown protocol (None: refused by the schema) leaves the rules that depend on
    # it unchecked; the others still run.
    known = protocol in PROTOCOLS
    sasl = known and protocol.startswith("SASL_")
    tls = known and protocol.endswith("SSL")
    mechanism = section.get("sasl_mechanism")
    username, password = section.get("username"), section.get("password")
    if password is not None and not _is_reference(password):
        problem(
            ("password",),
            f"{WHERE}.password: a literal password is refused; use env:NAME (an environment "
            "variable) or file:PATH (e.g. a mounted Secret)",
        )
    if (
        username is not None
        and username.startswith(("env:", "file:"))
        and not _is_reference(username)
    ):
        problem(("username",), f"{WHERE}.username: {username!r} names no variable or file")
    if sasl:
        if mechanism is None:
            problem(("protocol", "sasl_mechanism"), f"{WHERE}.sasl_mechanism: required with "
                    f"{protocol} (one of {', '.join(MECHANISMS)})")  # fmt: skip
        if username is None:
            problem(("protocol", "username"), f"{WHERE}.username: required with {protocol}")
        if password is None:
            problem(
                ("protocol", "password"),
                f"{WHERE}.password: required with {protocol} (env:NAME or file:PATH)",
            )
    elif known:
        for key in ("sasl_mechanism", "username", "password"):
            if section.get(key) is not None:
                problem(("protocol", key), f"{WHERE}.{key}: set, but protocol {protocol} "
                        "uses no SASL (use SASL_SSL)")  # fmt: skip
    if known and not tls:
        for key in ("ca_file", "cert_file", "key_file"):
            if section.get(key) is not None:
                problem(("protocol", key), f"{WHERE}.{key}: set, but protocol {protocol} "
                        "uses no TLS (use SSL or SASL_SSL)")  # fmt: skip
    if (section.get("cert_file") is None) != (section.get("key_file") is None):
        problem(("cert_file", "key_file"),
                f"{WHERE}: cert_file and key_file go together (client certificate)")  # fmt: skip
    return out


def warnings(section: Mapping[str, Any]) -> list[str]:
    """Allowed but risky or ineffective settings (logged at startup)."""
    out = []
    protocol = section.get("protocol", "PLAINTEXT") or ""
    if protocol == "SASL_PLAINTEXT" and section.get("sasl_mechanism") == "PLAIN":
        out.append(f"{WHERE}: SASL PLAIN over SASL_PLAINTEXT sends the password in clear "
                   "text; use SASL_SSL")  # fmt: skip
    if protocol.endswith("SSL") and section.get("check_hostname") is False:
        out.append(f"{WHERE}.check_hostname: false: any certificate the CA signed is accepted")
    elif protocol in PROTOCOLS and section.get("check_hostname") is False:
        # Not an error like ca_file without TLS: false only loosens, so ignoring it
        # weakens nothing; but it reads as if certificates were checked at all.
        out.append(f"{WHERE}.check_hostname: false has no effect: protocol {protocol} uses "
                   "no TLS, so there is no certificate to check; remove it")  # fmt: skip
    return out


@dataclass(frozen=True)
class KafkaSecurity:
    """Resolved settings: secrets read, files checked. The default is PLAINTEXT."""

    protocol: str = "PLAINTEXT"
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    check_hostname: bool = True
    mechanism: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def __repr__(self) -> str:
        parts = [f"protocol={self.protocol!r}"]
        for name in ("ca_file", "cert_file", "mechanism", "username"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={value!r}")
        if self.password is not None:
            parts.append("password=***")
        return f"KafkaSecurity({', '.join(parts)})"


PLAINTEXT = KafkaSecurity()


def _resolve_ref(
    value: str, key: str, environ: Mapping[str, str], read: Callable[[str], str]
) -> str:
    """The value behind ``env:NAME`` / ``file:PATH``; a plain value is returned as is."""
    kind, _, name = value.partition(":")
    if kind == "env":
        if not environ.get(name):
            raise KafkaSecurityError(f"{WHERE}.{key}: environment variable {name} is not set")
        return environ[name]
    if kind == "file":
        try:
            text = read(name).strip()
        except OSError as error:
            raise KafkaSecurityError(f"{WHERE}.{key}: cannot read {name}: "
                                     f"{error.strerror}") from None  # fmt: skip
        if not text:
            raise KafkaSecurityError(f"{WHERE}.{key}: {name} is empty")
        return text
    return value


def resolve(
    section: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    read: Callable[[str], str] | None = None,
) -> KafkaSecurity:
    """Resolve a validated ``kafka.security`` section (env and files read now).

    >>> resolve({"protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "username": "env:U",
    ...          "password": "env:P"}, environ={"U": "logfog", "P": "pw"}).username
    'logfog'
    >>> resolve({"protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "username": "logfog",
    ...          "password": "env:P"}, environ={})
    Traceback (most recent call last):
    ...
    streams.security.KafkaSecurityError: kafka.security.password: environment variable P is not set
    """
    env = os.environ if environ is None else environ
    reader = read or (lambda path: Path(path).read_text(encoding="utf-8"))
    found = problems(section)
    if found:  # a config that skipped validation must not connect half-secured
        raise KafkaSecurityError("; ".join(found))
    protocol = section.get("protocol", "PLAINTEXT")
    username = section.get("username")
    password = section.get("password")
    for key in ("ca_file", "cert_file", "key_file"):
        path = section.get(key)
        if path is not None and not os.access(path, os.R_OK):
            raise KafkaSecurityError(f"{WHERE}.{key}: cannot read {path}")
    return KafkaSecurity(
        protocol=protocol,
        ca_file=section.get("ca_file"),
        cert_file=section.get("cert_file"),
        key_file=section.get("key_file"),
        check_hostname=bool(section.get("check_hostname", True)),
        mechanism=section.get("sasl_mechanism"),
        username=None if username is None else _resolve_ref(username, "username", env, reader),
        password=None if password is None else _resolve_ref(password, "password", env, reader),
    )


def from_config(config: Mapping[str, Any]) -> KafkaSecurity:
    """The resolved security of a normalized config (PLAINTEXT when absent)."""
    section = config.get("kafka", {}).get("security")
    return resolve(section) if section else PLAINTEXT


# -- one mapping per client library ---------------------------------------------------


def ssl_context(sec: KafkaSecurity) -> ssl.SSLContext | None:
    """The TLS context for aiokafka/Faust (None without TLS): the system trust store,
    or ``ca_file``; the client certificate when given; hostname checked by default."""
    if not sec.tls:
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=sec.ca_file)
    if sec.cert_file is not None:
        context.load_cert_chain(sec.cert_file, sec.key_file)
    if not sec.check_hostname:
        context.check_hostname = False
    return context


def kafka_python_settings(sec: KafkaSecurity) -> dict[str, Any]:
    """Keyword arguments for kafka-python's KafkaAdminClient, KafkaProducer, KafkaConsumer.

    >>> kafka_python_settings(PLAINTEXT)
    {'security_protocol': 'PLAINTEXT'}
    >>> kafka_python_settings(KafkaSecurity("SSL", ca_file="/ca.pem"))
    {'security_protocol': 'SSL', 'ssl_check_hostname': True, 'ssl_cafile': '/ca.pem'}
    """
    out: dict[str, Any] = {"security_protocol": sec.protocol}
    if sec.tls:
        out["ssl_check_hostname"] = sec.check_hostname
        if sec.ca_file is not None:
            out["ssl_cafile"] = sec.ca_file
        if sec.cert_file is not None:
            out["ssl_certfile"] = sec.cert_file
            out["ssl_keyfile"] = sec.key_file
    if sec.sasl:
        out["sasl_mechanism"] = sec.mechanism
        out["sasl_plain_username"] = sec.username
        out["sasl_plain_password"] = sec.password
    return out


def aiokafka_settings(sec: KafkaSecurity) -> dict[str, Any]:
    """Keyword arguments for aiokafka's AIOKafkaProducer/AIOKafkaConsumer (TLS as a
    context: aiokafka takes no file names).

    >>> aiokafka_settings(KafkaSecurity("SASL_PLAINTEXT", mechanism="SCRAM-SHA-256",
    ...                                 username="u", password="p"))["sasl_mechanism"]
    'SCRAM-SHA-256'
    """
    out: dict[str, Any] = {"security_protocol": sec.protocol}
    if sec.tls:
        out["ssl_context"] = ssl_context(sec)
    if sec.sasl:
        out["sasl_mechanism"] = sec.mechanism
        out["sasl_plain_username"] = sec.username
        out["sasl_plain_password"] = sec.password
    return out


def faust_credentials(sec: KafkaSecurity) -> tuple[str, dict[str, Any]] | None:
    """Which ``faust.auth`` class to build for ``broker_credentials``, and its keyword
    arguments (``streams.app`` builds it: only it imports Faust). None: PLAINTEXT.

    Faust derives the protocol from the class and the context: SASLCredentials with a
    context is SASL_SSL, without one SASL_PLAINTEXT; SSLCredentials is SSL.

    >>> faust_credentials(PLAINTEXT) is None
    True
    >>> kind, kw = faust_credentials(KafkaSecurity("SASL_PLAINTEXT", mechanism="PLAIN",
    ...                                            username="u", password="p"))
    >>> kind, kw["ssl_context"], kw["mechanism"]
    ('SASLCredentials', None, 'PLAIN')
    """
    if sec.sasl:
        return "SASLCredentials", {
            "username": sec.username,
            "password": sec.password,
            "mechanism": sec.mechanism,
            "ssl_context": ssl_context(sec),
        }
    if sec.tls:
        return "SSLCredentials", {"context": ssl_context(sec)}
    return None
