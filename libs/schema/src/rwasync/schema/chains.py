"""The chains an asset's token may live on, and each chain's contract address format.

Chain names are lowercase and exact (`Ethereum` is refused, not guessed); `xdai` is the old name
of `gnosis` and is stored as `gnosis`. EVM addresses are stored in EIP-55 checksum form.
"""

import functools
import re
from typing import Final

import base58
from sha3 import keccak_256

EVM_CHAINS: Final = (
    "ethereum",
    "gnosis",
    "polygon",
    "arbitrum",
    "optimism",
    "base",
    "avalanche",
    "bsc",
)
CHAINS: Final = (*EVM_CHAINS, "solana", "algorand", "stellar")
CHAIN_ALIASES: Final = {"xdai": "gnosis"}

_EVM_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_SOLANA_ADDRESS = re.compile(r"[1-9A-HJ-NP-Za-km-z]{32,44}")
_ALGORAND_ACCOUNT = re.compile(r"[A-Z2-7]{58}")
_ALGORAND_ASSET_ID = re.compile(r"[0-9]{1,20}")
_STELLAR_ACCOUNT_OR_CONTRACT = re.compile(r"[GC][A-Z2-7]{55}")


def normalize_chain(name: str) -> str:
    """The stored name of a chain; ValueError naming the accepted chains for anything else."""
    if name in CHAINS:
        return name
    if name in CHAIN_ALIASES:
        return CHAIN_ALIASES[name]
    shown = name if len(name) <= 40 else name[:40] + "..."
    raise ValueError(f"unknown chain {shown!r}: expected one of {', '.join(CHAINS)} (lowercase)")


def eip55_checksum(address: str) -> str:
    """EIP-55 mixed-case form of a `0x` + 40 hex digit address (Keccak-256, not SHA3-256)."""
    return _checksummed(address[2:].lower())


# EIP-55 upper-cases each letter of the address whose nibble in the hash of its lowercase hex is
# 8 or more. Done on whole 40-byte integers rather than per character (1.7 µs against 4.5): a
# lowercase letter becomes upper case by clearing its 0x20 bit, so the address's bytes are XORed
# with 0x20 wherever both the hash's hex digit is 8-f (`_HIGH_NIBBLE`) and the address's
# character is a letter (`_LETTER`).
_HIGH_NIBBLE: Final = bytes.maketrans(b"0123456789abcdef", b"\0" * 8 + b"\x20" * 8)
_LETTER: Final = bytes.maketrans(b"0123456789abcdef", b"\0" * 10 + b"\x20" * 6)


# Catalogues name the same contracts over and over (every run re-validates its changed items,
# and a token's address recurs across its assets); a hash costs ~1 µs, a look-up a third of that.
# 4096 entries of ~0.3 KB each bound the cache at ~1.2 MB.
@functools.lru_cache(maxsize=4096)
def _checksummed(hex_digits: str) -> str:
    digits = hex_digits.encode("ascii")
    digest = keccak_256(digits).hexdigest().encode("ascii")[:40]
    upper = int.from_bytes(digest.translate(_HIGH_NIBBLE)) & int.from_bytes(
        digits.translate(_LETTER)
    )
    return "0x" + (int.from_bytes(digits) ^ upper).to_bytes(40).decode("ascii")


def _evm_address(address: str) -> str:
    if _EVM_ADDRESS.fullmatch(address) is None:
        raise ValueError("must be 0x followed by 40 hexadecimal digits")
    checksummed = eip55_checksum(address)
    hex_digits = address[2:]
    if hex_digits not in (hex_digits.lower(), hex_digits.upper()) and address != checksummed:
        raise ValueError(
            "mixed-case address fails the EIP-55 checksum"
            " (send it all-lowercase or in its checksummed form)"
        )
    return checksummed


def _solana_address(address: str) -> str:
    if _SOLANA_ADDRESS.fullmatch(address) is None or len(base58.b58decode(address)) != 32:
        raise ValueError("must be a base58 Solana address (32 to 44 characters, 32 bytes)")
    return address


def _algorand_address(address: str) -> str:
    if (
        _ALGORAND_ACCOUNT.fullmatch(address) is None
        and _ALGORAND_ASSET_ID.fullmatch(address) is None
    ):
        raise ValueError(
            "must be an Algorand account address (58 characters of A-Z and 2-7)"
            " or an asset id (1 to 20 digits)"
        )
    return address


def _stellar_address(address: str) -> str:
    if _STELLAR_ACCOUNT_OR_CONTRACT.fullmatch(address) is None:
        raise ValueError(
            "must be a Stellar issuer account (G + 55 characters of A-Z and 2-7)"
            " or a contract (C + 55 characters of A-Z and 2-7)"
        )
    return address


def normalize_address(chain: str, address: str) -> str:
    """The stored form of a contract address on `chain`; ValueError saying what was expected."""
    chain = normalize_chain(chain)
    if chain in EVM_CHAINS:
        return _evm_address(address)
    if chain == "solana":
        return _solana_address(address)
    if chain == "algorand":
        return _algorand_address(address)
    return _stellar_address(address)
