"""Envelope encryption, blind indexes and key rotation."""

import os
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpdesk.crypto import (
    BlindIndex,
    IntegrityError,
    KeyRing,
    decrypt_field,
    encrypt_field,
    normalise_email,
)


def ring(kek_id: str = "k1", **extra: bytes) -> KeyRing:
    keys = {kek_id: b"\x01" * 32, **extra}
    return KeyRing(kek_id, keys)


def test_field_round_trip_and_ciphertext_hides_plaintext():
    key, _ = ring().new_data_key()
    row = uuid.uuid4()
    blob = encrypt_field(key, "Patient Jane Canary", table="tickets", column="title", row_id=row)
    assert b"Canary" not in blob
    assert decrypt_field(key, blob, table="tickets", column="title", row_id=row) == (
        "Patient Jane Canary"
    )


@pytest.mark.parametrize(
    ("table", "column", "row_shift"),
    [("users", "title", False), ("tickets", "description", False), ("tickets", "title", True)],
)
def test_ciphertext_moved_to_another_place_fails(table, column, row_shift):
    key, _ = ring().new_data_key()
    row = uuid.uuid4()
    blob = encrypt_field(key, "x", table="tickets", column="title", row_id=row)
    target_row = uuid.uuid4() if row_shift else row
    with pytest.raises(IntegrityError):
        decrypt_field(key, blob, table=table, column=column, row_id=target_row)


def test_one_flipped_byte_is_an_integrity_error_not_garbage():
    key, _ = ring().new_data_key()
    row = uuid.uuid4()
    blob = bytearray(encrypt_field(key, "hello", table="t", column="c", row_id=row))
    blob[-1] ^= 0x01
    with pytest.raises(IntegrityError):
        decrypt_field(key, bytes(blob), table="t", column="c", row_id=row)


def test_other_data_key_cannot_open():
    keyring = ring()
    key_a, _ = keyring.new_data_key()
    key_b, _ = keyring.new_data_key()
    blob = encrypt_field(key_a, "x", table="t", column="c", row_id="1")
    with pytest.raises(IntegrityError):
        decrypt_field(key_b, blob, table="t", column="c", row_id="1")


def test_wrapped_key_unwraps_and_rotates_to_a_new_kek():
    old = ring("k1")
    key, wrapped = old.new_data_key()
    assert wrapped.kek_id == "k1"
    rotated_ring = KeyRing("k2", {"k1": b"\x01" * 32, "k2": os.urandom(32)})
    rewrapped = rotated_ring.rewrap(wrapped)
    assert rewrapped.kek_id == "k2"
    assert rotated_ring.unwrap(rewrapped).material == key.material
    # Once k1 is retired, only the rewrapped copy opens.
    only_new = KeyRing("k2", {"k2": rotated_ring._keks["k2"]})
    with pytest.raises(IntegrityError):
        only_new.unwrap(wrapped)


def test_wrong_kek_cannot_unwrap():
    _, wrapped = ring().new_data_key()
    other = KeyRing("k1", {"k1": b"\x02" * 32})
    with pytest.raises(IntegrityError):
        other.unwrap(wrapped)


def test_keyring_refuses_short_keys():
    with pytest.raises(ValueError):
        KeyRing("k", {"k": b"short"})


@given(st.emails())
def test_blind_index_is_case_and_space_insensitive(email):
    index = BlindIndex(b"k" * 32)
    assert index.email(email) == index.email("  " + email.upper() + " ")
    assert normalise_email(email.upper()) == normalise_email(email)


def test_blind_index_depends_on_the_key():
    assert BlindIndex(b"a" * 32).email("a@x.com") != BlindIndex(b"b" * 32).email("a@x.com")
