-- One row per successful analysis, keyed by the SwingAnalysis uid so a retried
-- Job overwrites instead of duplicating.
CREATE TABLE analyses (
    uid           TEXT PRIMARY KEY,
    namespace     TEXT NOT NULL,
    name          TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    fps           DOUBLE PRECISION NOT NULL,
    frames        BIGINT NOT NULL,
    width         INTEGER NOT NULL,
    height        INTEGER NOT NULL,
    view          TEXT NOT NULL,
    model         TEXT NOT NULL,
    tempo_ratio   DOUBLE PRECISION,
    backswing_ms  DOUBLE PRECISION,
    downswing_ms  DOUBLE PRECISION,
    report_uri    TEXT NOT NULL,
    report        JSONB NOT NULL,
    recorded_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX analyses_user_id ON analyses (user_id);

-- The eight swing events of an analysis.
CREATE TABLE events (
    analysis_uid  TEXT NOT NULL REFERENCES analyses (uid) ON DELETE CASCADE,
    event         TEXT NOT NULL,
    frame         BIGINT NOT NULL,
    time_s        DOUBLE PRECISION NOT NULL,
    confidence    REAL NOT NULL,
    PRIMARY KEY (analysis_uid, event)
);

-- Named metrics of an analysis (only those the camera view allows).
CREATE TABLE metrics (
    analysis_uid  TEXT NOT NULL REFERENCES analyses (uid) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    value         DOUBLE PRECISION NOT NULL,
    unit          TEXT NOT NULL,
    confidence    REAL NOT NULL,
    PRIMARY KEY (analysis_uid, name)
);

-- Why an analysis failed; at most one row per analysis (the latest attempt).
CREATE TABLE failures (
    analysis_uid  TEXT PRIMARY KEY,
    namespace     TEXT NOT NULL,
    name          TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    code          TEXT NOT NULL,
    message       TEXT NOT NULL,
    recorded_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX failures_user_id ON failures (user_id);
