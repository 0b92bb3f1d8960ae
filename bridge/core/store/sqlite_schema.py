"""SQLite schema migrations, applied in order and recorded in ``schema_migrations``.

Never edit a released migration: add the next one. Each entry is (version, description, SQL).
"""

from .migrations import load as migration_files

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "messages (with dedupe keys), events, outbox, holds, watermarks, job runs, audit log",
        """
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            channel TEXT NOT NULL,
            format TEXT NOT NULL,
            status TEXT NOT NULL,
            received_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            raw BLOB NOT NULL,
            sha256 TEXT NOT NULL,
            size INTEGER NOT NULL,
            origin TEXT NOT NULL DEFAULT '{}',
            dedupe_key TEXT,
            control_id TEXT,
            sending_application TEXT,
            sending_facility TEXT,
            message_type TEXT,
            patient_id TEXT,
            encounter_id TEXT,
            prescription_number TEXT,
            ncpdp_message_id TEXT,
            trace_id TEXT,
            records TEXT,
            error TEXT,
            replay_of INTEGER REFERENCES messages(id),
            policy_override INTEGER NOT NULL DEFAULT 0,
            lease_owner TEXT,
            lease_expires REAL,
            lease_token INTEGER NOT NULL DEFAULT 0
        );
        -- Business-key indexes are partial: most keys are only known after decoding, so the intake's
        -- commit (which a sender waits on) does not pay for index entries of NULL keys.
        CREATE INDEX messages_queue ON messages(status, channel, id);
        CREATE INDEX messages_channel ON messages(channel, id);
        CREATE INDEX messages_received ON messages(received_at);
        CREATE UNIQUE INDEX messages_dedupe ON messages(dedupe_key) WHERE dedupe_key IS NOT NULL;
        CREATE INDEX messages_control_id ON messages(control_id) WHERE control_id IS NOT NULL;
        CREATE INDEX messages_patient_id ON messages(patient_id) WHERE patient_id IS NOT NULL;
        CREATE INDEX messages_encounter_id ON messages(encounter_id) WHERE encounter_id IS NOT NULL;
        CREATE INDEX messages_prescription_number ON messages(prescription_number)
            WHERE prescription_number IS NOT NULL;
        CREATE INDEX messages_ncpdp_message_id ON messages(ncpdp_message_id) WHERE ncpdp_message_id IS NOT NULL;
        CREATE INDEX messages_trace_id ON messages(trace_id) WHERE trace_id IS NOT NULL;

        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            message_id INTEGER NOT NULL REFERENCES messages(id),
            at REAL NOT NULL,
            kind TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX events_message ON events(message_id, id);

        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            message_id INTEGER NOT NULL REFERENCES messages(id),
            destination TEXT NOT NULL,
            status TEXT NOT NULL,
            payload BLOB NOT NULL,
            media_type TEXT NOT NULL,
            file_extension TEXT NOT NULL,
            order_key TEXT,
            order_mode TEXT NOT NULL DEFAULT 'strict',
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL,
            created_at REAL NOT NULL,
            delivered_at REAL,
            last_error TEXT,
            lease_owner TEXT,
            lease_expires REAL,
            lease_token INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX outbox_due ON outbox(status, next_attempt_at, id);
        CREATE INDEX outbox_lane ON outbox(destination, order_key, status, id);
        CREATE INDEX outbox_message ON outbox(message_id);

        CREATE TABLE holds (
            id INTEGER PRIMARY KEY,
            message_id INTEGER NOT NULL REFERENCES messages(id),
            status TEXT NOT NULL,
            created_at REAL NOT NULL,
            reasons TEXT NOT NULL,
            resolved_at REAL,
            resolved_by TEXT,
            resolution TEXT
        );
        CREATE INDEX holds_status ON holds(status, id);
        CREATE INDEX holds_message ON holds(message_id);

        CREATE TABLE watermarks (
            name TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            updated_at REAL NOT NULL
        );

        CREATE TABLE job_runs (
            id INTEGER PRIMARY KEY,
            job TEXT NOT NULL,
            slot TEXT NOT NULL,
            status TEXT NOT NULL,
            owner TEXT,
            started_at REAL NOT NULL,
            finished_at REAL,
            detail TEXT NOT NULL DEFAULT '{}',
            UNIQUE (job, slot)
        );

        CREATE TABLE audit_log (
            id INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            detail TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        );
        CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        """,
    ),
    (
        2,
        "prescription lifecycle: prescriptions, their events, outbound control ids on outbox rows",
        """
        ALTER TABLE outbox ADD COLUMN control_id TEXT;
        ALTER TABLE outbox ADD COLUMN message_type TEXT;
        CREATE INDEX outbox_control_id ON outbox(control_id) WHERE control_id IS NOT NULL;

        CREATE TABLE prescriptions (
            number TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            message_id INTEGER NOT NULL REFERENCES messages(id),
            trace_id TEXT,
            open_task TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );

        CREATE TABLE prescription_events (
            id INTEGER PRIMARY KEY,
            message_id INTEGER NOT NULL REFERENCES messages(id),
            number TEXT,
            event_type TEXT NOT NULL,
            matched_by TEXT,
            from_state TEXT,
            to_state TEXT,
            at REAL NOT NULL,
            detail TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX prescription_events_number ON prescription_events(number, id);
        CREATE INDEX prescription_events_unmatched ON prescription_events(id) WHERE number IS NULL;
        """,
    ),
    (
        3,
        "admin web: users, API tokens, channel pause state",
        """
        CREATE TABLE users (
            name TEXT PRIMARY KEY,
            password_hash TEXT NOT NULL,
            role TEXT NOT NULL,
            created_at REAL NOT NULL,
            disabled INTEGER NOT NULL DEFAULT 0
        );

        CREATE TABLE api_tokens (
            name TEXT PRIMARY KEY,
            token_sha256 TEXT NOT NULL UNIQUE,
            role TEXT NOT NULL,
            created_at REAL NOT NULL,
            last_used_at REAL,
            revoked_at REAL
        );

        CREATE TABLE channel_state (
            channel TEXT PRIMARY KEY,
            paused INTEGER NOT NULL DEFAULT 0,
            updated_at REAL NOT NULL,
            updated_by TEXT,
            reason TEXT
        );
        """,
    ),
    (
        4,
        "scheduled jobs: run leases (owner + expiry, attempts); indexes for retention and metrics",
        """
        ALTER TABLE job_runs ADD COLUMN lease_expires REAL;
        ALTER TABLE job_runs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;
        CREATE INDEX job_runs_job ON job_runs(job, id);
        CREATE INDEX job_runs_running ON job_runs(status, lease_expires) WHERE status = 'running';
        CREATE INDEX outbox_pending_destination ON outbox(destination) WHERE status = 'pending';
        """,
    ),
    (
        5,
        "users: a session epoch, so logging out ends a session everywhere it was copied",
        """
        ALTER TABLE users ADD COLUMN session_epoch INTEGER NOT NULL DEFAULT 0;
        """,
    ),
    (
        6,
        "replays: chain root and target destinations, stable outbound identities, resolved dead letters",
        """
        -- replay_root: the first message of a replay chain (NULL for an original), whose id names every
        -- outbound identity of the chain; replay_destinations: JSON list a replay is limited to.
        ALTER TABLE messages ADD COLUMN replay_root INTEGER REFERENCES messages(id);
        ALTER TABLE messages ADD COLUMN replay_destinations TEXT;
        CREATE INDEX messages_replay_root ON messages(replay_root) WHERE replay_root IS NOT NULL;
        -- the chain's first outbox row for the same destination (file names, idempotency keys)
        ALTER TABLE outbox ADD COLUMN original_message_id INTEGER;
        ALTER TABLE outbox ADD COLUMN original_outbox_id INTEGER;
        -- a dead letter resolved by a later delivery of a replay: that delivered outbox row and its message
        ALTER TABLE outbox ADD COLUMN resolved_by INTEGER;
        ALTER TABLE outbox ADD COLUMN resolved_by_message INTEGER;
        CREATE INDEX holds_open_or_waiting ON holds(status, message_id) WHERE status IN ('open', 'waiting');
        """,
    ),
]
MIGRATIONS.append((
    7,
    "queue lanes: an order key per message, lane heads for processing and delivery (claims by index)",
    """
    -- order_key: the message's lane within its channel (NULL: a lane of its own). lane_head = 1 marks
    -- the one unfinished message of a lane that workers may claim; the others wait behind it (0).
    ALTER TABLE messages ADD COLUMN order_key TEXT;
    ALTER TABLE messages ADD COLUMN lane_head INTEGER NOT NULL DEFAULT 0;
    -- outbox lane_head: 1 = head of its (destination, order_key) lane, 2 = a rotate-mode row that
    -- failed and stepped aside (claimable when due, no longer ordered), 0 = waiting or finished
    ALTER TABLE outbox ADD COLUMN lane_head INTEGER NOT NULL DEFAULT 0;
    -- what was waiting when this migration ran keeps today's order: one lane per channel
    UPDATE messages SET order_key = 'channel:' || channel WHERE status IN ('received', 'processing');
    UPDATE messages SET lane_head = 1 WHERE id IN (
        SELECT MIN(id) FROM messages WHERE status IN ('received', 'processing') GROUP BY channel);
    UPDATE outbox SET lane_head = 1 WHERE status = 'pending' AND (order_key IS NULL OR id IN (
        SELECT MIN(id) FROM outbox WHERE status = 'pending' AND order_key IS NOT NULL
        GROUP BY destination, order_key));
    UPDATE outbox SET lane_head = 2 WHERE status = 'pending' AND lane_head = 0 AND order_mode = 'rotate'
        AND attempts > 0;
    -- claims read heads in order from these (small: only heads are in them), never a lane's backlog
    CREATE INDEX messages_lane_heads ON messages(id) WHERE lane_head = 1;
    CREATE INDEX outbox_lane_heads ON outbox(next_attempt_at, id) WHERE lane_head > 0;
    -- the unfinished messages of a lane, oldest first: who is next when a head finishes
    CREATE INDEX messages_lanes ON messages(channel, order_key, id)
        WHERE order_key IS NOT NULL AND status IN ('received', 'processing');
    """,
))
MIGRATIONS.append((
    8,
    "lookups by business key read their index in id order",
    """
    -- the oldest message of an encounter or prescription, or outbox row of a control id, is one index
    -- entry away (the same indexes as the PostgreSQL store, whose planner needs them; see there)
    DROP INDEX messages_encounter_id;
    CREATE INDEX messages_encounter_id ON messages(encounter_id, id) WHERE encounter_id IS NOT NULL;
    DROP INDEX messages_prescription_number;
    CREATE INDEX messages_prescription_number ON messages(prescription_number, id)
        WHERE prescription_number IS NOT NULL;
    DROP INDEX outbox_control_id;
    CREATE INDEX outbox_control_id ON outbox(control_id, id) WHERE control_id IS NOT NULL;
    """,
))
MIGRATIONS.append((
    9,
    "a paused channel's lane heads are parked (lane_head 3), out of the claimable heads' index",
    """
    -- claims read messages_lane_heads (lane_head = 1); a paused channel's heads there were passed
    -- over by every claim, so a paused backlog slowed every other channel's claims
    UPDATE messages SET lane_head = 3
        WHERE lane_head = 1 AND channel IN (SELECT channel FROM channel_state WHERE paused = 1);
    """,
))
MIGRATIONS.append((
    10,
    "alerts: one row per (rule, subject) with its firing/resolved state and the notice lease",
    """
    -- names, counts and times only (never PHI); every write is a compare-and-set (bridge.core.alerts)
    CREATE TABLE alerts (
        rule TEXT NOT NULL,
        subject TEXT NOT NULL,
        state TEXT NOT NULL,
        episode INTEGER NOT NULL DEFAULT 1,
        started_at REAL NOT NULL,
        last_seen_at REAL NOT NULL,
        resolved_at REAL,
        notified_at REAL,
        notices INTEGER NOT NULL DEFAULT 0,
        summary TEXT NOT NULL DEFAULT '',
        facts TEXT NOT NULL DEFAULT '{}',
        last_error TEXT,
        claim_owner TEXT,
        claim_expires REAL,
        PRIMARY KEY (rule, subject)
    );
    """,
))
MIGRATIONS.extend(migration_files("sqlite"))  # numbered SQL files from 11 on (bridge/core/store/migrations)
