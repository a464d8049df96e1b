-- The first schema: filled in as the backend grows (see the design note).
CREATE TABLE IF NOT EXISTS gatehouse_secrets (
	name text PRIMARY KEY,
	value bytea NOT NULL
);
