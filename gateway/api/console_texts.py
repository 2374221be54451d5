"""The console's words in Kazakh, Russian and English, one entry per phrase. Application statuses come from
the applicants' catalogue (`core.texts`), with English beside them here."""

from __future__ import annotations

from core.domain import Status
from core.texts import status_kk, status_ru

LANGUAGES = ("kk", "ru", "en")
LANGUAGE_NAMES = {"kk": "Қазақша", "ru": "Русский", "en": "English"}

TEXTS: dict[str, tuple[str, str, str]] = {  # key: (kk, ru, en)
    "title": ("licgate: операторлар пульті", "licgate: пульт операторов", "licgate: operators' console"),
    "skip": ("Мазмұнға өту", "Перейти к содержимому", "Skip to content"),
    "nav": ("Негізгі мәзір", "Главное меню", "Main menu"),
    "dashboard": ("Басты бет", "Сводка", "Dashboard"),
    "applications": ("Өтініштер", "Заявления", "Applications"),
    "messages": ("Хабарламалар журналы", "Журнал сообщений", "Message log"),
    "dead_letters": ("Жеткізілмеген хабарламалар", "Недоставленные сообщения", "Dead letters"),
    "language": ("Тіл", "Язык", "Language"),
    "login": ("Кіру", "Вход", "Log in"),
    "logout": ("Шығу", "Выход", "Log out"),
    "name": ("Пайдаланушы аты", "Имя пользователя", "User name"),
    "password": ("Құпиясөз", "Пароль", "Password"),
    "login_failed": ("Аты немесе құпиясөзі қате", "Неверное имя или пароль", "Wrong name or password"),
    "locked_out": ("Тым көп сәтсіз әрекет: кіру уақытша бұғатталды, қайта көріңіз",
                   "Слишком много неудачных попыток: вход временно заблокирован, попробуйте позже",
                   "Too many failed attempts: logins are locked for a while, try later"),
    "form_expired": ("Форманың мерзімі өтті: бетті жаңартып, қайталаңыз",
                     "Форма устарела: обновите страницу и повторите",
                     "The form has expired: reload the page and try again"),
    "signed_in_as": ("Кірген:", "Вы вошли как", "Signed in as"),
    "role_admin": ("әкімші", "администратор", "admin"),
    "role_viewer": ("бақылаушы", "наблюдатель", "viewer"),
    "live_on": ("Сандар өздігінен жаңартылады", "Цифры обновляются сами", "The figures update by themselves"),
    "live_off": ("Жаңа сандар үшін бетті қайта жүктеңіз", "Для новых цифр обновите страницу",
                 "Reload the page for new figures"),
    "queues": ("Көрсетілетін қызметті берушілердің кезегі", "Очереди услугодателей", "Provider queues"),
    "provider": ("Қызмет беруші (БСН)", "Услугодатель (БИН)", "Provider (BIN)"),
    "queued": ("Кезекте", "В очереди", "Queued"),
    "oldest_queued": ("Ең ескісі кезекте", "Самое старое в очереди", "Oldest waiting for"),
    "outbox": ("SHEP арқылы жіберу", "Отправка через ШЭП", "Delivery through SHEP"),
    "pending": ("Жіберілуде", "Ожидают отправки", "Waiting to be sent"),
    "oldest_undelivered": ("Ең ескі жеткізілмегені", "Самое старое недоставленное", "Oldest undelivered"),
    "breaches": ("Мерзімнің бұзылуы", "Нарушения сроков", "Deadline breaches"),
    "breaches_none": ("Бұзылған мерзім жоқ", "Нарушений сроков нет", "No deadline breached"),
    "overdue_link": ("Мерзімі өткен өтініштер", "Просроченные заявления", "Overdue applications"),
    "trust": ("Сенім: сертификаттар және кері қайтару", "Доверие: сертификаты и отзыв",
              "Trust: certificates and revocation"),
    "trust_item": ("Нысан", "Объект", "Item"),
    "reason": ("Себебі", "Причина", "Reason"),
    "audit": ("Хабарламалар журналының тұтастығы", "Целостность журнала сообщений", "Message log integrity"),
    "state_ok": ("қалыпты", "в норме", "ok"),
    "state_warning": ("назар аударыңыз", "внимание", "warning"),
    "state_failing": ("ақау", "сбой", "failing"),
    "state_degraded": ("ақау бар", "есть сбои", "degraded"),
    "search": ("Іздеу", "Найти", "Search"),
    "registration_number": ("Тіркеу нөмірі", "Регистрационный номер", "Registration number"),
    "request_number": ("Жіберушінің нөмірі (requestNumber)", "Номер отправителя (requestNumber)",
                       "Sender's number (requestNumber)"),
    "iin": ("ЖСН", "ИИН", "IIN"),
    "bin": ("БСН", "БИН", "BIN"),
    "status": ("Мәртебесі", "Статус", "Status"),
    "channel": ("Арна", "Канал", "Channel"),
    "any": ("кез келген", "любой", "any"),
    "overdue": ("Мерзімі өткен ғана", "Только просроченные", "Overdue only"),
    "overdue_short": ("мерзімі өтті", "просрочено", "overdue"),
    "found": ("Табылды", "Найдено", "Found"),
    "nothing_found": ("Ештеңе табылмады", "Ничего не найдено", "Nothing found"),
    "applicant": ("Өтініш беруші", "Заявитель", "Applicant"),
    "service_type": ("Қызмет түрі", "Вид услуги", "Service"),
    "received_at": ("Қабылданды", "Получено", "Received"),
    "due_at": ("Нәтиже мерзімі", "Срок результата", "Result due"),
    "timeline": ("Рәсімдер мен мерзімдер", "Шаги и сроки", "Steps and deadlines"),
    "step": ("Қадам", "Шаг", "Step"),
    "counted_from": ("Есептеледі", "Отсчитывается от", "Counted from"),
    "limit": ("Шектеу", "Предел", "Limit"),
    "due": ("Мерзімі", "Срок", "Due"),
    "done": ("Орындалды", "Выполнено", "Done"),
    "deadline_PENDING": ("күтілуде", "ожидается", "pending"),
    "deadline_MET": ("уақытында", "в срок", "met"),
    "deadline_BREACHED": ("бұзылды", "нарушен", "breached"),
    "actor": ("Орындаушы", "Исполнитель", "Actor"),
    "messages_of": ("Өтініш бойынша хабарламалар", "Сообщения по заявлению", "Messages about this application"),
    "direction": ("Бағыты", "Направление", "Direction"),
    "endpoint": ("Нүкте", "Точка", "Endpoint"),
    "verdict": ("Шешім", "Вердикт", "Verdict"),
    "at": ("Уақыты", "Время", "Time"),
    "outbound_of": ("Жіберілетін хабарламалар", "Исходящие сообщения", "Outbound messages"),
    "kind": ("Түрі", "Тип", "Kind"),
    "state": ("Күйі", "Состояние", "State"),
    "attempts": ("Әрекеттер", "Попыток", "Attempts"),
    "last_error": ("Соңғы қате", "Последняя ошибка", "Last error"),
    "retry": ("Қайта жіберу", "Отправить повторно", "Send again"),
    "retry_all": ("Барлығын қайта жіберу", "Отправить все повторно", "Send all again"),
    "retried": ("Қайта жіберуге қойылды", "Поставлено на повторную отправку", "Queued to be sent again"),
    "retried_none": ("Қайта жіберетін ештеңе жоқ", "Нечего отправлять повторно", "Nothing to send again"),
    "admins_only": ("Қайта жіберу тек әкімшілерге рұқсат етілген",
                    "Повторная отправка доступна только администраторам", "Only admins may send messages again"),
    "no_dead_letters": ("Жеткізілмеген хабарлама жоқ", "Недоставленных сообщений нет", "No dead letters"),
    "message_id": ("Хабарлама нөмірі (messageId)", "Идентификатор сообщения (messageId)", "Message id (messageId)"),
    "sender": ("Жіберуші", "Отправитель", "Sender"),
    "since": ("Бастап", "С", "From"),
    "until": ("Дейін", "По", "Until"),
    "envelope": ("Конверт", "Конверт", "Envelope"),
    "download": ("Жүктеп алу", "Скачать", "Download"),
    "audit_records": ("Тізбектегі жазбалар", "Записей в цепочке", "Records in the chain"),
    "audit_checkpoints": ("Бақылау нүктелері", "Контрольные точки", "Checkpoints"),
    "audit_last": ("Соңғы бақылау нүктесі", "Последняя контрольная точка", "Last checkpoint"),
    "size": ("Көлемі, байт", "Размер, байт", "Size, bytes"),
    "older": ("Ескірек жазбалар", "Более ранние записи", "Older records"),
    "times_in": ("Уақыт белдеуі:", "Время указано в поясе", "Times are in"),
    "bad_time": ("Уақыт дұрыс емес: ЖЖЖЖ-АА-КК СС:ММ", "Неверное время: ГГГГ-ММ-ДД ЧЧ:ММ",
                 "Not a time: YYYY-MM-DD HH:MM"),
    "admins_download": ("Конвертті тек әкімшілер жүктей алады", "Скачать конверт могут только администраторы",
                        "Only admins may download envelopes"),
    "not_found": ("Өтініш табылмады", "Заявление не найдено", "No such application"),
    "back_to_search": ("Іздеуге оралу", "Вернуться к поиску", "Back to search"),
    "seconds": ("сек", "сек", "s"),
    "minutes": ("мин", "мин", "min"),
    "hours": ("сағ", "ч", "h"),
    "days": ("күн", "дн", "d"),
    "never": ("—", "—", "—"),
}

# Reasons of the trust and delivery states, with their {parameters}.
REASONS: dict[str, tuple[str, str, str]] = {
    "audit_ok": ("Тізбекте {records} жазба, барлығы қол қойылған бақылау нүктесімен қамтылған",
                 "В цепочке {records} записей, все покрыты подписанной контрольной точкой",
                 "{records} records in the chain, all covered by a signed checkpoint"),
    "audit_pending": ("Тізбекте {records} жазба, {uncovered} жазбаны келесі бақылау нүктесі қамтиды",
                      "В цепочке {records} записей, {uncovered} покроет следующая контрольная точка",
                      "{records} records in the chain, {uncovered} to be covered by the next checkpoint"),
    "audit_late": ("{uncovered} жазба бақылау нүктесін күтуде", "{uncovered} записей ждут контрольной точки",
                   "{uncovered} records waiting for a checkpoint"),
    "audit_stalled": ("{uncovered} жазба {minutes} минуттан бері бақылау нүктесін күтуде: аудит тоқтап тұр",
                      "{uncovered} записей ждут контрольной точки {minutes} мин: аудит остановился",
                      "{uncovered} records waiting {minutes} min for a checkpoint: the audit has stalled"),
    "audit_off": ("Аудит тізбегі жүргізілмейді", "Цепочка аудита не ведётся", "The audit chain is not kept"),
    "no_ca": ("ca_dir ішінде CA сертификаты жоқ: ешбір қолтаңбаға сенім жоқ",
              "В ca_dir нет сертификатов УЦ: ни одной подписи нельзя доверять",
              "No CA certificate in ca_dir: no signature can be trusted"),
    "revocation_off": ("Кері қайтару тексерілмейді: кері қайтарылған сертификат қабылданады",
                       "Проверка отзыва выключена: отозванный сертификат будет принят",
                       "Revocation checks are off: a revoked certificate is accepted"),
    "cert_expired": ("{date} мерзімі өтті", "Срок истёк {date}", "Expired on {date}"),
    "cert_expiring": ("{days} күннен кейін мерзімі бітеді ({date})", "Истекает через {days} дн. ({date})",
                      "Expires in {days} days ({date})"),
    "cert_valid": ("{date} дейін жарамды", "Действителен до {date}", "Valid until {date}"),
    "crl_no_next_update": ("CRL-де nextUpdate жоқ", "В CRL нет nextUpdate", "The CRL names no nextUpdate"),
    "crl_stale": ("{date} бастап ескірген: ол қамтитын сертификаттар CERT_STATUS_UNKNOWN алады",
                  "Устарел с {date}: сертификаты из него получают CERT_STATUS_UNKNOWN",
                  "Stale since {date}: certificates it covers get CERT_STATUS_UNKNOWN"),
    "crl_soon": ("nextUpdate {minutes} минуттан кейін", "nextUpdate через {minutes} мин",
                 "nextUpdate in {minutes} minutes"),
    "crl_ok": ("nextUpdate {date}", "nextUpdate {date}", "nextUpdate {date}"),
    "no_crl": ("crl_dir ішінде CRL жоқ: әр сертификат CERT_STATUS_UNKNOWN алады",
               "В crl_dir нет CRL: каждый сертификат получает CERT_STATUS_UNKNOWN",
               "No CRL in crl_dir: every certificate gets CERT_STATUS_UNKNOWN"),
    "ocsp_aia": ("Әр сертификаттың өз OCSP қызметі сұралады", "Опрашивается OCSP из каждого сертификата",
                 "Each certificate's own responder is asked"),
    "ocsp_down_fallback": ("Қолжетімсіз ({error}): CRL бойынша тексеріледі", "Недоступен ({error}): проверка по CRL",
                           "Unreachable ({error}): the CRL fallback answers"),
    "ocsp_down": ("Қолжетімсіз ({error}): сертификаттар CERT_STATUS_UNKNOWN алады",
                  "Недоступен ({error}): сертификаты получают CERT_STATUS_UNKNOWN",
                  "Unreachable ({error}): certificates get CERT_STATUS_UNKNOWN"),
    "ocsp_ok": ("Қолжетімді (HTTP {status})", "Доступен (HTTP {status})", "Reachable (HTTP {status})"),
    "dead_letters": ("{count} жеткізілмеген хабарлама операторды күтуде ({kinds})",
                     "{count} недоставленных сообщений ждут оператора ({kinds})",
                     "{count} dead letter(s) wait for an operator ({kinds})"),
    "undelivered_old": ("Ең ескі жеткізілмеген хабарлама {age} сек бұрын ({limit} сек кейін дабыл)",
                        "Самому старому недоставленному сообщению {age} сек (тревога после {limit} сек)",
                        "The oldest undelivered message is {age} s old (alert after {limit} s)"),
}

STATUS_EN = {Status.RECEIVED: "Received", Status.REGISTERED: "Registered", Status.IN_REVIEW: "In review",
             Status.GRANTED: "Granted", Status.REFUSED: "Refused (motivated refusal)",
             Status.INTAKE_REFUSED: "Refused at intake"}


def text(key: str, lang: str) -> str:
    kk, ru, en = TEXTS[key]
    return {"kk": kk, "ru": ru, "en": en}[lang]


def reason_text(code: str, params: dict[str, str], lang: str) -> str:
    kk, ru, en = REASONS[code]
    return {"kk": kk, "ru": ru, "en": en}[lang].format(**params)


def status_text(status: Status | str, lang: str) -> str:
    status = Status(status)
    return {"kk": status_kk(status), "ru": status_ru(status), "en": STATUS_EN[status]}[lang]


def duration(seconds: float, lang: str) -> str:
    """A short age: "42 s", "7 min", "3 h", "2 d" in the page's language."""
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {text(unit, lang)}"
    return f"{int(seconds)} {text('seconds', lang)}"
