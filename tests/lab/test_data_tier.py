"""The gateway's data tier, checked from outside the nodes over the lab network."""

from __future__ import annotations

import psycopg
import pytest
import redis


@pytest.mark.parametrize("user", ["litellm", "openwebui"])
def test_postgresql_accepts_each_service_user_with_its_password(gateway_address, secret, user):
    password = secret(f"{user}_database_password")
    with psycopg.connect(
        host=gateway_address, port=5432, dbname=user, user=user, password=password, connect_timeout=5
    ) as conn:
        row = conn.execute(
            "SELECT current_user, current_database(), current_setting('password_encryption')"
        ).fetchone()
    assert row == (user, user, "scram-sha-256")


def test_postgresql_rejects_a_wrong_password(gateway_address):
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(
            host=gateway_address,
            port=5432,
            dbname="litellm",
            user="litellm",
            password="not-the-password",
            connect_timeout=5,
        )


def test_redis_requires_its_password(gateway_address, secret):
    anonymous = redis.Redis(host=gateway_address, port=6379, socket_timeout=5)
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.ping()
    client = redis.Redis(host=gateway_address, port=6379, password=secret("redis_password"), socket_timeout=5)
    assert client.ping() is True
    client.set("aiswarm:lab-test", "ok", ex=30)
    assert client.get("aiswarm:lab-test") == b"ok"
    assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "allkeys-lru"
