"""kafka.security: validation, secret references, and the mapping to every client."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from streams.config import validate
from streams.security import (
    PLAINTEXT,
    KafkaSecurity,
    KafkaSecurityError,
    aiokafka_settings,
    faust_credentials,
    kafka_python_settings,
    problems_by_key,
    resolve,
)

SASL_SSL = {"protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
            "username": "logfog", "password": "env:KAFKA_PASSWORD"}  # fmt: skip


def config(security: dict[str, Any]) -> dict[str, Any]:
    return {
        "kafka": {"security": security},
        "destinations": {"ops": {"topic": "logs.ops", "fields": {
            "s": {"from": "response.status", "action": "keep"}}}},
    }  # fmt: skip


def test_a_literal_password_is_refused_with_its_place() -> None:
    errors = validate(config({**SASL_SSL, "password": "hunter2"}))
    assert len(errors) == 1
    assert errors[0].startswith("kafka.security.password: a literal password is refused")
    assert "hunter2" not in errors[0]


def test_a_password_of_the_wrong_type_is_not_quoted() -> None:
    errors = validate(config({**SASL_SSL, "password": 73815294}))
    assert errors == ["kafka.security.password: must be a string or null, not int"]


@pytest.mark.parametrize(
    ("security", "expected"),
    [
        ({"protocol": "SASL_SSL"}, ["kafka.security.sasl_mechanism: required with SASL_SSL",
                                    "kafka.security.username: required with SASL_SSL",
                                    "kafka.security.password: required with SASL_SSL"]),
        ({"protocol": "PLAINTEXT", "ca_file": "/ca.pem"},
         ["kafka.security.ca_file: set, but protocol PLAINTEXT uses no TLS"]),
        ({"protocol": "SSL", "username": "u"},
         ["kafka.security.username: set, but protocol SSL uses no SASL"]),
        ({"protocol": "SSL", "cert_file": "/c.pem"},
         ["kafka.security: cert_file and key_file go together"]),
        ({**SASL_SSL, "sasl_mechanism": "GSSAPI"},
         ["kafka.security.sasl_mechanism: 'GSSAPI' is not PLAIN"]),
        ({**SASL_SSL, "protocol": "TLS"}, ["kafka.security.protocol: 'TLS' is not one of"]),
        ({**SASL_SSL, "password": "env:"}, ["kafka.security.password: env:/file: needs a name"]),
    ],
)  # fmt: skip
def test_every_inconsistency_is_reported(security: dict[str, Any], expected: list[str]) -> None:
    errors = validate(config(security))
    assert len(errors) == len(expected), errors
    for error, start in zip(errors, expected, strict=True):
        assert error.startswith(start), errors


@pytest.mark.parametrize(
    ("security", "expected"),
    [
        ({"protocol": "SASL_SSL", "check_hostname": "no"},
         ["kafka.security.check_hostname: must be true/false, not 'no'",
          "kafka.security.sasl_mechanism: required with SASL_SSL",
          "kafka.security.username: required with SASL_SSL",
          "kafka.security.password: required with SASL_SSL"]),
        ({"protocol": "TLS", "password": "hunter2"},
         ["kafka.security.protocol: 'TLS' is not one of",
          "kafka.security.password: a literal password is refused"]),
        ({"protocol": "SASL_SSL", "username": 5, "password": "env:P"},
         ["kafka.security.username: must be a string or null, not 5",
          "kafka.security.sasl_mechanism: required with SASL_SSL"]),
        ({"protocol": "SSL", "cert_file": 1, "key_file": "/k.pem", "username": "u"},
         ["kafka.security.cert_file: must be a string or null, not 1",
          "kafka.security.username: set, but protocol SSL uses no SASL"]),
    ],
)  # fmt: skip
def test_one_bad_key_does_not_hide_the_cross_key_problems(
    security: dict[str, Any], expected: list[str]
) -> None:
    """The cross-key rules were skipped whenever any kafka.security key had an error: a
    typo in check_hostname hid that SASL_SSL lacked its mechanism, user and password
    (reported one round later). Rules about the bad key itself add nothing."""
    errors = validate(config(security))
    assert len(errors) == len(expected), errors
    for error, start in zip(errors, expected, strict=True):
        assert error.startswith(start), errors


@pytest.mark.parametrize(
    ("security", "expected"),
    [
        ({"protocol": "SASL_SSL"}, [{"protocol", "sasl_mechanism"}, {"protocol", "username"},
                                    {"protocol", "password"}]),
        ({"protocol": "PLAINTEXT", "ca_file": "/ca.pem"}, [{"protocol", "ca_file"}]),
        ({"protocol": "SSL", "cert_file": "/c.pem"}, [{"cert_file", "key_file"}]),
        ({**SASL_SSL, "username": "env:"}, [{"username"}]),
    ],
)  # fmt: skip
def test_each_problem_says_which_keys_it_is_about(
    security: dict[str, Any], expected: list[set[str]]
) -> None:
    """The config check leaves out problems about keys that have a type error of their
    own by these tags (it used to look for key names in the problem's text)."""
    assert [set(keys) for keys, _ in problems_by_key(security)] == expected


def test_sasl_plain_without_tls_is_a_warning() -> None:
    warnings: list[str] = []
    security = {**SASL_SSL, "protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN"}
    assert validate(config(security), warnings) == []
    assert any("clear text" in w for w in warnings)


def test_references_are_resolved_from_env_and_files(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-a-file\n")
    sec = resolve({**SASL_SSL, "username": "env:KAFKA_USER", "password": f"file:{secret}"},
                  environ={"KAFKA_USER": "svc-logfog"})  # fmt: skip
    assert (sec.username, sec.password) == ("svc-logfog", "from-a-file")
    assert "from-a-file" not in repr(sec)


@pytest.mark.parametrize(
    ("password", "message"),
    [("env:NOPE", "kafka.security.password: environment variable NOPE is not set"),
     ("file:/nonexistent/pw", "kafka.security.password: cannot read /nonexistent/pw")],
)  # fmt: skip
def test_unresolvable_references_fail_clearly(password: str, message: str) -> None:
    with pytest.raises(KafkaSecurityError, match="^" + message):
        resolve({**SASL_SSL, "password": password}, environ={})


def test_resolve_refuses_an_unvalidated_literal_password() -> None:
    with pytest.raises(KafkaSecurityError, match="literal password is refused"):
        resolve({**SASL_SSL, "password": "hunter2"}, environ={})


def test_plaintext_maps_to_plaintext_everywhere() -> None:
    assert kafka_python_settings(PLAINTEXT) == {"security_protocol": "PLAINTEXT"}
    assert aiokafka_settings(PLAINTEXT) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(PLAINTEXT) is None


def _cert(tmp_path: Path) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "logfog-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return str(cert_path), str(key_path)


def test_sasl_ssl_maps_to_each_client(tmp_path: Path) -> None:
    ca, key = _cert(tmp_path)
    sec = resolve({**SASL_SSL, "ca_file": ca, "cert_file": ca, "key_file": key},
                  environ={"KAFKA_PASSWORD": "pw"})  # fmt: skip
    assert kafka_python_settings(sec) == {
        "security_protocol": "SASL_SSL", "ssl_check_hostname": True, "ssl_cafile": ca,
        "ssl_certfile": ca, "ssl_keyfile": key, "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "logfog", "sasl_plain_password": "pw",
    }  # fmt: skip
    aio = aiokafka_settings(sec)
    assert aio["security_protocol"] == "SASL_SSL"
    assert (aio["sasl_mechanism"], aio["sasl_plain_username"], aio["sasl_plain_password"]) == (
        "SCRAM-SHA-512", "logfog", "pw")  # fmt: skip
    context = aio["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    assert context.get_ca_certs()[0]["subject"] == ((("commonName", "logfog-test"),),)


def test_faust_credentials_give_aiokafka_the_same_settings(tmp_path: Path) -> None:
    """Faust's own translation (credentials_to_aiokafka_auth) of what we build for it
    equals our aiokafka mapping: the worker connects like every other client."""
    import faust.auth
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    ca, _ = _cert(tmp_path)
    cases = [
        KafkaSecurity("SASL_SSL", ca_file=ca, mechanism="SCRAM-SHA-256", username="u",
                      password="p"),
        KafkaSecurity("SASL_PLAINTEXT", mechanism="PLAIN", username="u", password="p"),
        KafkaSecurity("SSL", ca_file=ca, check_hostname=False),
    ]  # fmt: skip
    for sec in cases:
        described = faust_credentials(sec)
        assert described is not None
        kind, kwargs = described
        faust_view = dict(credentials_to_aiokafka_auth(getattr(faust.auth, kind)(**kwargs)))
        ours = aiokafka_settings(sec)
        for settings in (faust_view, ours):  # contexts are equal by configuration
            context = settings.pop("ssl_context", None)
            settings["tls"] = (
                None
                if context is None
                else (context.check_hostname, context.verify_mode, len(context.get_ca_certs()))
            )
        assert faust_view == ours, sec


def test_worker_faust_settings_carry_the_credentials(tmp_path: Path, monkeypatch: Any) -> None:
    from streams.app import faust_settings
    from streams.config import normalize

    monkeypatch.setenv("LOGFOG_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KAFKA_PASSWORD", "pw")
    errors: list[str] = []
    cfg = normalize(config(SASL_SSL), errors, [])
    assert errors == []
    creds = faust_settings(cfg, "kafka:9093", 6066)["broker_credentials"]
    assert type(creds).__name__ == "SASLCredentials"
    assert (creds.username, creds.password, creds.mechanism.value) == (
        "logfog",
        "pw",
        "SCRAM-SHA-512",
    )
    assert creds.protocol.value == "SASL_SSL"
    plain = normalize(config({}), errors, [])
    assert faust_settings(plain, "kafka:9092", 6066)["broker_credentials"] is None
