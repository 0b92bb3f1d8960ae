-- intake journals: how far each one has been moved into messages (bridge.core.journal)
CREATE TABLE journal_positions (
    journal_id TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    segment INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    moved INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL
);
