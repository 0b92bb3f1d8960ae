-- send attempts per destination and minute (destination state: attempts in the last hour, failing since)
-- Written with each delivery outcome, in its transaction (destination_reads.DestinationReads._record_attempts),
-- and kept a day: a destination's state reads ~60 rows of it however busy the destination is.
CREATE TABLE destination_minutes (
    destination TEXT NOT NULL,
    minute INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    dead INTEGER NOT NULL DEFAULT 0,
    first_failure_at REAL,
    last_failure_at REAL,
    last_success_at REAL,
    last_dead_at REAL,
    last_error TEXT,
    PRIMARY KEY (destination, minute)
);
CREATE INDEX destination_minutes_minute ON destination_minutes(minute);
