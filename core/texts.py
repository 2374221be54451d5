"""The one catalogue of applicant-facing texts, in Kazakh and Russian.

Status names follow docs/provider-api.md; error messages are shown to applicants by the portals, so they
are written for people, not for integrators (integrators read `errorCode` and `errorData`).
"""

from __future__ import annotations

from core.domain import Status

STATUS_TEXTS: dict[Status, tuple[str, str]] = {
    Status.RECEIVED: ("Қабылданды", "Принято"),
    Status.REGISTERED: ("Тіркелді", "Зарегистрировано"),
    Status.IN_REVIEW: ("Қаралуда", "На рассмотрении"),
    Status.GRANTED: ("Қанағаттандырылды", "Удовлетворено"),
    Status.REFUSED: ("Бас тартылды (дәлелді бас тарту)", "Отказано (мотивированный отказ)"),
    Status.INTAKE_REFUSED: ("Өтінішті қабылдаудан бас тартылды", "Отказано в приеме заявления"),
}


def status_kk(status: Status | str) -> str:
    return STATUS_TEXTS[Status(status)][0]


def status_ru(status: Status | str) -> str:
    return STATUS_TEXTS[Status(status)][1]


# MED_LICENSE_STATUS about a number the asking sender has no application under.
STATUS_NOT_FOUND_TEXT = ("Өтініш табылмады", "Заявление не найдено")


def status_not_found() -> tuple[str, str]:
    return STATUS_NOT_FOUND_TEXT


# Document checklist codes (docs/configuration.md, [checklists]); unknown codes are shown as they are.
DOCUMENT_TEXTS: dict[str, tuple[str, str]] = {
    "APPLICATION_FORM": ("Өтініш", "Заявление"),
    "FEE_RECEIPT": ("Лицензиялық алымның төленгенін растайтын құжат", "Документ об оплате лицензионного сбора"),
    "PREMISES_EQUIPMENT": (
        "Үй-жай мен жабдыққа қатысты құжаттар",
        "Документы на помещение и оборудование",
    ),
    "STAFF_QUALIFICATION": (
        "Қызметкерлердің біліктілігін растайтын құжаттар",
        "Документы о квалификации работников",
    ),
    "REISSUE_GROUNDS": (
        "Қайта ресімдеуге негіз болатын құжат",
        "Документ, подтверждающий основание для переоформления",
    ),
}


def document_kk(code: str) -> str:
    return DOCUMENT_TEXTS.get(code, (code, code))[0]


def document_ru(code: str) -> str:
    return DOCUMENT_TEXTS.get(code, (code, code))[1]


INTAKE_REFUSAL_TEXT = (
    "Құжаттар топтамасы толық емес, өтінішті қабылдаудан бас тартылды. Жетіспейтін құжаттар:",
    "Пакет документов неполный, в приеме заявления отказано. Отсутствующие документы:",
)

ERROR_TEXTS: dict[str, tuple[str, str]] = {
    "MALFORMED_MESSAGE": ("Хабарлама пішімі дұрыс емес", "Сообщение имеет неверный формат"),
    "MESSAGE_TOO_LARGE": ("Хабарлама өлшемі тым үлкен", "Размер сообщения превышает допустимый"),
    "SCHEMA_INVALID": ("Хабарлама сызбаға сәйкес келмейді", "Сообщение не соответствует схеме"),
    "SENDER_UNKNOWN": ("Жіберуші жүйе белгісіз", "Система-отправитель неизвестна"),
    "SENDER_AUTH_FAILED": ("Жіберушінің аутентификациясы сәтсіз", "Ошибка аутентификации отправителя"),
    "SERVICE_NOT_ALLOWED": (
        "Жіберушіге бұл қызметке рұқсат жоқ",
        "Отправителю не разрешен доступ к этой услуге",
    ),
    "SERVICE_UNKNOWN": ("Қызмет белгісіз", "Услуга неизвестна"),
    "TRANSPORT_SIGNATURE_INVALID": (
        "Көлік қолтаңбасы жоқ немесе жарамсыз",
        "Транспортная подпись отсутствует или недействительна",
    ),
    "SIGNATURE_MISSING": ("Өтінішке ЭЦҚ қойылмаған", "Заявление не подписано ЭЦП"),
    "SIGNATURE_INVALID": ("ЭЦҚ жарамсыз", "ЭЦП недействительна"),
    "ALGORITHM_UNSUPPORTED": (
        "Қолтаңба алгоритмі қолдау көрсетілмейді",
        "Алгоритм подписи не поддерживается",
    ),
    "TIMESTAMP_INVALID": (
        "Қолтаңбаның уақыт белгісі жарамсыз",
        "Метка времени подписи недействительна",
    ),
    "CERT_UNTRUSTED": (
        "Тіркеу куәлігі сенімді куәландырушы орталықпен берілмеген",
        "Регистрационное свидетельство выдано недоверенным удостоверяющим центром",
    ),
    "CERT_EXPIRED": ("Тіркеу куәлігінің мерзімі өтті", "Срок действия регистрационного свидетельства истек"),
    "CERT_NOT_YET_VALID": (
        "Тіркеу куәлігінің қолданылу мерзімі әлі басталмаған",
        "Срок действия регистрационного свидетельства еще не наступил",
    ),
    "CERT_REVOKED": ("Тіркеу куәлігі кері қайтарылған", "Регистрационное свидетельство отозвано"),
    "CERT_STATUS_UNKNOWN": (
        "Тіркеу куәлігінің мәртебесін тексеру мүмкін болмады",
        "Не удалось проверить статус регистрационного свидетельства",
    ),
    "CERT_NOT_FOR_SIGNING": (
        "Бұл кілт қол қоюға арналмаған (аутентификация кілті)",
        "Ключ не предназначен для подписи (ключ аутентификации)",
    ),
    "IIN_INVALID": ("ЖСН дұрыс емес", "ИИН некорректен"),
    "BIN_INVALID": ("БСН дұрыс емес", "БИН некорректен"),
    "IIN_MISMATCH": (
        "Қолтаңба иесінің ЖСН өтініш берушінің ЖСН-іне сәйкес келмейді",
        "ИИН владельца подписи не совпадает с ИИН заявителя",
    ),
    "BIN_MISMATCH": (
        "Қолтаңба иесінің БСН өтініш берушінің БСН-іне сәйкес келмейді",
        "БИН владельца подписи не совпадает с БИН заявителя",
    ),
    "SIGNER_NOT_AUTHORIZED": (
        "Қол қоюшының заңды тұлға атынан қол қою құқығы жоқ",
        "У подписанта нет права подписи от имени юридического лица",
    ),
    "DOCUMENT_DIGEST_MISMATCH": (
        "Құжаттың мазмұны оның хэшіне сәйкес келмейді",
        "Содержимое документа не совпадает с его хэшем",
    ),
    "MESSAGE_ID_CONFLICT": (
        "Бұл хабарлама идентификаторы басқа мазмұнмен бұрын келген",
        "Сообщение с этим идентификатором уже поступало с другим содержимым",
    ),
    "OVERLOADED": (
        "Жүйе уақытша жүктелген, кейінірек қайталаңыз",
        "Система временно перегружена, повторите позже",
    ),
    "INTERNAL_ERROR": ("Ішкі қате", "Внутренняя ошибка"),
    # The provider IS API (docs/provider-api.md) beyond the section 4 codes.
    "STEP_OUT_OF_ORDER": (
        "Бұл қадам регламент бойынша кезегінен тыс",
        "Этот шаг нарушает порядок регламента",
    ),
    "STEP_TIME_INVALID": (
        "Қадамның уақыты дұрыс емес (болашақта немесе алдыңғы қадамнан ерте)",
        "Неверное время шага (в будущем или раньше предыдущего шага)",
    ),
    "UNAUTHORIZED": ("Рұқсат белгісі жоқ немесе жарамсыз", "Токен доступа отсутствует или недействителен"),
    "NOT_FOUND": ("Өтініш табылмады", "Заявление не найдено"),
    "FORBIDDEN": ("Бұл әрекетке рұқсат жоқ", "Это действие не разрешено"),
    "UNSUPPORTED_MEDIA_TYPE": ("Мазмұн түрі қолдау көрсетілмейді", "Тип содержимого не поддерживается"),
}


def error_message(code: str) -> str:
    """`kk / ru` message for an error code, as shown in ErrorInfo/errorMessage."""
    kk, ru = ERROR_TEXTS.get(code, ERROR_TEXTS["INTERNAL_ERROR"])
    return f"{kk} / {ru}"
