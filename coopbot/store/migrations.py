"""Numbered schema migrations. Append only: never edit a migration that has shipped.

Each entry runs in one transaction together with the bump of `schema_version`.
"""

MIGRATIONS: list[str] = [
    # 1: bot core: sync token, handled events (dedup), append-only audit log.
    """
    CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE handled_events (
        event_id TEXT PRIMARY KEY,
        room_id TEXT NOT NULL,
        handled_at REAL NOT NULL
    );
    CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        event_id TEXT,
        room_id TEXT,
        sender TEXT,
        command TEXT NOT NULL,
        args TEXT NOT NULL DEFAULT '',
        decision TEXT NOT NULL,
        result TEXT NOT NULL DEFAULT '',
        operation_id TEXT
    );
    CREATE INDEX audit_log_room ON audit_log(room_id, id);
    CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
    CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
    """,
    # 2: swarm operations: one row per operation, and per-app locks that survive restarts.
    """
    CREATE TABLE operations (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        app TEXT NOT NULL,
        server TEXT NOT NULL,
        from_version TEXT,
        to_version TEXT,
        requester TEXT NOT NULL,
        approvers TEXT NOT NULL DEFAULT '',
        room_id TEXT,
        event_id TEXT,
        started_at REAL NOT NULL,
        finished_at REAL,
        result TEXT NOT NULL DEFAULT 'running',
        summary TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX operations_app ON operations(app, started_at);
    CREATE TABLE app_locks (
        app TEXT PRIMARY KEY,
        operation_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        holder TEXT NOT NULL,
        since REAL NOT NULL,
        instance TEXT NOT NULL
    );
    """,
    # 3: approval requests bound to a plan, and the votes on them.
    """
    CREATE TABLE approval_requests (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        room_id TEXT NOT NULL,
        command_event_id TEXT NOT NULL,
        thread_root TEXT NOT NULL,
        card_event_id TEXT,
        requester TEXT NOT NULL,
        command TEXT NOT NULL,
        args TEXT NOT NULL,
        operation TEXT NOT NULL,
        app TEXT NOT NULL,
        binding TEXT NOT NULL,
        plan_text TEXT NOT NULL,
        policy TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        state TEXT NOT NULL DEFAULT 'open',
        closed_at REAL,
        outcome TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX approval_requests_open ON approval_requests(state, room_id);
    CREATE UNIQUE INDEX approval_requests_card ON approval_requests(card_event_id);
    CREATE TABLE approval_votes (
        request_id INTEGER NOT NULL REFERENCES approval_requests(id),
        voter TEXT NOT NULL,
        approve INTEGER NOT NULL,
        event_id TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        seq INTEGER NOT NULL,
        via TEXT NOT NULL,
        PRIMARY KEY (request_id, voter)
    );
    CREATE TABLE vote_sequence (id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT UNIQUE);
    """,
    # 4: notifications: muted apps, and recipe versions already announced per app.
    """
    CREATE TABLE mutes (
        app TEXT PRIMARY KEY,
        until REAL NOT NULL,
        muted_by TEXT NOT NULL,
        room_id TEXT NOT NULL
    );
    CREATE TABLE announced_versions (
        app TEXT NOT NULL,
        version TEXT NOT NULL,
        announced_at REAL NOT NULL,
        PRIMARY KEY (app, version)
    );
    """,
    # 5: mutes per room: a mute silences the notifications of the room that set it (and of the
    # rooms it answers for), never a room elsewhere; earlier mutes stay with the room that set them.
    """
    CREATE TABLE room_mutes (
        room_id TEXT NOT NULL,
        app TEXT NOT NULL,
        until REAL NOT NULL,
        muted_by TEXT NOT NULL,
        PRIMARY KEY (room_id, app)
    );
    INSERT INTO room_mutes(room_id, app, until, muted_by)
        SELECT room_id, app, until, muted_by FROM mutes;
    DROP TABLE mutes;
    ALTER TABLE room_mutes RENAME TO mutes;
    """,
    # 6: crash recovery: each command's status message (to close it after a crash), and an
    # operation's progress so far (a restore's volume states) for the same reason.
    """
    CREATE TABLE status_messages (
        command_event_id TEXT PRIMARY KEY,
        room_id TEXT NOT NULL,
        status_event_id TEXT NOT NULL,
        thread_root TEXT NOT NULL,
        posted_at REAL NOT NULL
    );
    ALTER TABLE operations ADD COLUMN checkpoint TEXT NOT NULL DEFAULT '';
    """,
    # 7: consent decisions: a vote is consent, stand aside or block (earlier votes were yes or
    # no), and a request's one reminder of who has not voted.
    """
    ALTER TABLE approval_votes ADD COLUMN choice TEXT NOT NULL DEFAULT '';
    UPDATE approval_votes SET choice = CASE approve WHEN 1 THEN 'consent' ELSE 'block' END;
    ALTER TABLE approval_requests ADD COLUMN reminded_at REAL;
    """,
]
