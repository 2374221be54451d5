"""The shared vocabulary of licgate: domain records, refusals, bilingual texts, the hardened XML parser,
IIN/BIN rules and the clock. It imports only the standard library and lxml; every other package sits on it."""
