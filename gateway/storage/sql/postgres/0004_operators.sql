-- Operators: console sessions and login lockouts, and the indexes behind the operators' searches.
-- A session is known by the sha256 of its cookie token: the token itself is never stored.
CREATE TABLE operator_sessions (
    token_hash text PRIMARY KEY,
    operator   text NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX operator_sessions_by_expiry ON operator_sessions (expires_at);

CREATE TABLE operator_lockouts (
    operator     text PRIMARY KEY,
    failures     integer NOT NULL,
    locked_until timestamptz
);

CREATE INDEX applications_by_applicant_iin ON applications ((applicant ->> 'iin'), received_at);
CREATE INDEX applications_by_applicant_bin ON applications ((applicant ->> 'bin'), received_at);
CREATE INDEX applications_by_request_number ON applications (request_number, received_at);
CREATE INDEX applications_by_received ON applications (received_at);
CREATE INDEX applications_open_by_due ON applications (due_at) WHERE status NOT IN ('GRANTED', 'REFUSED', 'INTAKE_REFUSED');
CREATE INDEX outbox_pending_by_id ON outbox (id) WHERE state = 'PENDING';
