"""Who must sign (CONTRACT 4.1, 5), checked with signers read from real signed documents."""

from __future__ import annotations

import pytest

from core.domain import Applicant, ApplicantKind, Channel
from core.errors import BinMismatch, IinMismatch, SignerNotAuthorized
from gateway.binding import check_applicant_signer, check_provider_signer
from signing.pki import CENTER_BIN, ENTITY_BIN, PROVIDER_BIN
from signing.signer import sign_enveloped
from tests.signing.conftest import application

PERSON = Applicant(ApplicantKind.INDIVIDUAL, "АХМЕТОВА АЙГЕРІМ САПАРҚЫЗЫ", iin="871008401427")
ENTITY = Applicant(ApplicantKind.LEGAL_ENTITY, 'ТОО "Медицинский центр Шипагер"', bin=ENTITY_BIN)


@pytest.fixture(scope="module")
def signer_of(pki, crl_verifier):  # noqa: ANN001, ANN201
    cache: dict = {}

    def signer(party: str):  # noqa: ANN202
        if party not in cache:
            p = pki.party(party)
            cache[party] = crl_verifier.verify_enveloped(sign_enveloped(application(), p.key_pem, p.cert_pem)).signer
        return cache[party]

    return signer


@pytest.mark.parametrize("channel", [Channel.PORTAL, Channel.ELICENSE])
def test_an_individual_applicant_signs_with_their_own_iin(signer_of, channel):
    check_applicant_signer(channel, PERSON, signer_of("individual"))


@pytest.mark.parametrize("channel", [Channel.PORTAL, Channel.ELICENSE])
def test_another_persons_signature_is_iin_mismatch(signer_of, channel):
    with pytest.raises(IinMismatch):
        check_applicant_signer(channel, PERSON, signer_of("individual2"))


def test_a_legal_entity_employee_signing_for_a_person_is_iin_mismatch(signer_of):
    with pytest.raises(IinMismatch):
        check_applicant_signer(Channel.PORTAL, Applicant(ApplicantKind.INDIVIDUAL, "x", iin="920305600782"),
                               signer_of("le_head"))


@pytest.mark.parametrize("party", ["le_head", "le_signer"])
def test_a_legal_entity_signs_through_its_first_head_or_right_to_sign_holder(signer_of, party):
    check_applicant_signer(Channel.PORTAL, ENTITY, signer_of(party))


def test_a_legal_entitys_plain_employee_is_signer_not_authorized(signer_of):
    with pytest.raises(SignerNotAuthorized):
        check_applicant_signer(Channel.ELICENSE, ENTITY, signer_of("le_employee"))


def test_another_entitys_head_is_bin_mismatch(signer_of):
    with pytest.raises(BinMismatch):
        check_applicant_signer(Channel.PORTAL, ENTITY, signer_of("provider_head"))


def test_an_individuals_signature_for_a_legal_entity_is_bin_mismatch(signer_of):
    with pytest.raises(BinMismatch):
        check_applicant_signer(Channel.PORTAL, ENTITY, signer_of("individual"))


def test_a_center_application_is_signed_by_an_operator_under_the_centers_bin(signer_of):
    check_applicant_signer(Channel.CENTER, PERSON, signer_of("center_operator"), center_bin=CENTER_BIN)
    check_applicant_signer(Channel.CENTER, ENTITY, signer_of("center_operator"), center_bin=CENTER_BIN)


@pytest.mark.parametrize("party", ["individual", "le_head"])
def test_a_center_application_signed_outside_the_center_is_bin_mismatch(signer_of, party):
    with pytest.raises(BinMismatch):
        check_applicant_signer(Channel.CENTER, PERSON, signer_of(party), center_bin=CENTER_BIN)


@pytest.mark.parametrize("party", ["provider_head", "provider_signer"])
def test_the_providers_result_is_signed_by_its_head_or_right_to_sign_holder(signer_of, party):
    check_provider_signer(signer_of(party), PROVIDER_BIN)


def test_the_providers_employee_without_signing_rights_is_signer_not_authorized(signer_of):
    with pytest.raises(SignerNotAuthorized):
        check_provider_signer(signer_of("provider_employee"), PROVIDER_BIN)


@pytest.mark.parametrize("party", ["le_head", "individual"])
def test_a_result_signed_outside_the_provider_is_bin_mismatch(signer_of, party):
    with pytest.raises(BinMismatch):
        check_provider_signer(signer_of(party), PROVIDER_BIN)
