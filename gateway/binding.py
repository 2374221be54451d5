"""Who must sign (docs/shep.md and docs/provider-api.md): the identity binding between a verified signer and
the parties a document names.

- PORTAL and ELICENSE: the applicant signs. An individual's certificate IIN must be the applicant's IIN
  (IIN_MISMATCH); a legal entity's certificate BIN must be the applicant's BIN (BIN_MISMATCH), and its
  holder needs the first-head or right-to-sign role (SIGNER_NOT_AUTHORIZED).
- CENTER: an operator of the Public Service Center signs, under the Center sender's configured BIN
  (BIN_MISMATCH); the applicant was identified in person.
- A provider's result: signed under the provider's BIN (BIN_MISMATCH) by its first head or a right-to-sign
  holder (SIGNER_NOT_AUTHORIZED).

Numbers a check reads from a document are the element's whole text (`full_text`): comments or processing
instructions inside `<iin>` must not split the number a check compares.
"""

from __future__ import annotations

from lxml import etree

from core.domain import Applicant, ApplicantKind, Channel, Role, SignerIdentity
from core.errors import BinMismatch, IinMismatch, SignerNotAuthorized

SIGNING_ROLES = (Role.FIRST_HEAD, Role.RIGHT_TO_SIGN)


def full_text(element: etree._Element | None) -> str:
    """All the character data inside `element` (its descendants' too), without comments or PIs, stripped.

    `element.text` stops at the first child node, so `<iin>8710<!-- -->08401427</iin>` would read "8710".
    """
    if element is None:
        return ""
    # itertext() yields the element's text and its children's text and tails, skipping the content of
    # comments and PIs but not the text that follows them.
    return "".join(element.itertext()).strip()


def _can_sign_for_entity(signer: SignerIdentity) -> bool:
    return any(signer.has_role(role) for role in SIGNING_ROLES)


def check_applicant_signer(channel: Channel, applicant: Applicant, signer: SignerIdentity,
                           center_bin: str | None = None) -> None:
    """Raise the refusal when `signer` may not sign this application."""
    if channel is Channel.CENTER:
        if not center_bin:
            raise BinMismatch("the Center sender has no configured BIN to check its operator against")
        if signer.bin != center_bin:
            raise BinMismatch(f"a Center application must be signed by an operator under BIN {center_bin}, "
                              f"the certificate carries {signer.bin or 'no BIN'}")
        return
    if applicant.kind is ApplicantKind.INDIVIDUAL:
        if not signer.iin or signer.iin != applicant.iin:
            raise IinMismatch(f"the signer's IIN {signer.iin or '(none)'} is not the applicant's IIN {applicant.iin}")
        return
    if not signer.bin or signer.bin != applicant.bin:
        raise BinMismatch(f"the signer's BIN {signer.bin or '(none)'} is not the applicant's BIN {applicant.bin}")
    if not _can_sign_for_entity(signer):
        raise SignerNotAuthorized("the signer is neither the first head nor a right-to-sign holder of the applicant")


def check_provider_signer(signer: SignerIdentity, provider_bin: str) -> None:
    """Raise unless `signer` may sign the provider's results: its BIN, first head or right to sign."""
    if signer.bin != provider_bin:
        raise BinMismatch(f"the result must be signed under the provider's BIN {provider_bin}, "
                          f"the certificate carries {signer.bin or 'no BIN'}")
    if not _can_sign_for_entity(signer):
        raise SignerNotAuthorized("the result's signer is neither the provider's first head nor a right-to-sign holder")
