"""Chain names and each chain's contract address format."""

import pytest

from rwasync.schema.asset import normalized_document, parse_asset
from rwasync.schema.chains import (
    CHAINS,
    EVM_CHAINS,
    eip55_checksum,
    normalize_address,
    normalize_chain,
)

from .documents import NOW, changed, detroit_house

pytestmark = pytest.mark.unit

# EIP-55's own test vectors: mixed case, then the all-caps and all-lower ones.
EIP55_VECTORS = [
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    "0x52908400098527886E0F7030069857D2E4169EE7",
    "0xde709f2102306220921060314715629080e2fb77",
]
EIP55_EXAMPLE = EIP55_VECTORS[0]


def test_chain_names() -> None:
    assert set(EVM_CHAINS) < set(CHAINS)
    assert len(CHAINS) == 11
    assert all(normalize_chain(chain) == chain for chain in CHAINS)
    assert normalize_chain("xdai") == "gnosis"


@pytest.mark.parametrize("name", ["Ethereum", "ETHEREUM", "eth", "matic", "", " gnosis"])
def test_unknown_chain_names_list_the_accepted_ones(name: str) -> None:
    with pytest.raises(ValueError, match=r"expected one of ethereum, gnosis, .*, stellar"):
        normalize_chain(name)


@pytest.mark.parametrize("address", EIP55_VECTORS)
def test_eip55_vectors_are_their_own_checksum_form(address: str) -> None:
    assert eip55_checksum(address) == address
    assert normalize_address("ethereum", address) == address


@pytest.mark.parametrize("chain", EVM_CHAINS)
def test_evm_address_forms_on_every_evm_chain(chain: str) -> None:
    lower = EIP55_EXAMPLE.lower()
    upper = "0x" + EIP55_EXAMPLE[2:].upper()

    assert normalize_address(chain, EIP55_EXAMPLE) == EIP55_EXAMPLE
    assert normalize_address(chain, lower) == EIP55_EXAMPLE
    assert normalize_address(chain, upper) == EIP55_EXAMPLE


def test_one_case_flip_breaks_the_checksum() -> None:
    for index in range(2, 42):
        char = EIP55_EXAMPLE[index]
        if not char.isalpha():
            continue
        flipped = EIP55_EXAMPLE[:index] + char.swapcase() + EIP55_EXAMPLE[index + 1 :]
        with pytest.raises(ValueError, match="EIP-55 checksum"):
            normalize_address("gnosis", flipped)


@pytest.mark.parametrize(
    "address",
    [
        EIP55_EXAMPLE[:-1],
        EIP55_EXAMPLE + "0",
        EIP55_EXAMPLE[2:],
        "0X" + EIP55_EXAMPLE[2:],
        "0x" + "g" * 40,
        " " + EIP55_EXAMPLE,
        "",
    ],
)
def test_malformed_evm_addresses(address: str) -> None:
    with pytest.raises(ValueError, match="0x followed by 40 hexadecimal digits"):
        normalize_address("polygon", address)


VALID_ADDRESSES = [
    ("solana", "So11111111111111111111111111111111111111112"),
    ("solana", "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"),
    ("solana", "11111111111111111111111111111111"),
    ("algorand", "VCMJKWOY5P5P7SKMZFFOCEROPJCZOTIJMNIYNUCKH7LRO45JMJP6UYBIJA"),
    ("algorand", "31566704"),
    ("algorand", "1"),
    ("algorand", "9" * 20),
    ("stellar", "GA5ZSEJYB37JRC5AVCIA5MOP4RHTM335X2KGX3IHOJAPP5RE34K4KZVN"),
    ("stellar", "CA" + "7" * 54),
]
INVALID_ADDRESSES = [
    ("solana", "So1111111111111111111111111111111111111111O"),  # O is not base58
    ("solana", "0" * 32),
    ("solana", "1" * 31),
    ("solana", "z" * 44),  # base58 alright, but 33 bytes
    ("solana", "z" * 45),
    ("solana", EIP55_EXAMPLE),
    ("algorand", "VCMJKWOY5P5P7SKMZFFOCEROPJCZOTIJMNIYNUCKH7LRO45JMJP6UYBIJ"),  # 57
    ("algorand", "vcmjkwoy5p5p7skmzffocseropjczotijmniynuckh7lro45jmjp6uybija"),
    ("algorand", "VCMJKWOY5P5P7SKMZFFOCEROPJCZOTIJMNIYNUCKH7LRO45JMJP6UYBIJ1"),
    ("algorand", "9" * 21),
    ("algorand", "-5"),
    ("stellar", "SA5ZSEJYB37JRC5AVCIA5MOP4RHTM335X2KGX3IHOJAPP5RE34K4KZVN"),  # a secret seed
    ("stellar", "GA5ZSEJYB37JRC5AVCIA5MOP4RHTM335X2KGX3IHOJAPP5RE34K4KZV"),
    ("stellar", "ga5zsejyb37jrc5avcia5mop4rhtm335x2kgx3ihojapp5re34k4kzvn"),
    ("stellar", "C" + "1" * 55),
]


@pytest.mark.parametrize(("chain", "address"), VALID_ADDRESSES)
def test_valid_non_evm_addresses_are_kept_as_sent(chain: str, address: str) -> None:
    assert normalize_address(chain, address) == address


@pytest.mark.parametrize(("chain", "address"), INVALID_ADDRESSES)
def test_invalid_non_evm_addresses(chain: str, address: str) -> None:
    with pytest.raises(ValueError, match="must be"):
        normalize_address(chain, address)


def test_normalize_address_refuses_unknown_chains() -> None:
    with pytest.raises(ValueError, match="unknown chain 'tron'"):
        normalize_address("tron", "TXYZ")


@pytest.mark.parametrize(("chain", "address"), VALID_ADDRESSES)
def test_every_chain_in_a_document(chain: str, address: str) -> None:
    document = changed(detroit_house(), "/token/chain", chain)
    document = changed(document, "/token/contract_address", address)

    token = normalized_document(parse_asset(document, now=NOW))["token"]

    assert (token["chain"], token["contract_address"]) == (chain, address)


def test_xdai_and_lowercase_address_are_stored_as_gnosis_and_checksum() -> None:
    document = changed(detroit_house(), "/token/chain", "xdai")

    token = normalized_document(parse_asset(document, now=NOW))["token"]

    assert token["chain"] == "gnosis"
    assert token["contract_address"] == EIP55_EXAMPLE
