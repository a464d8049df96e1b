-- The first schema (see DESIGN.md §1): one table per record type, the
-- record as json (kept byte for byte), the fields it is found by as
-- columns computed by Gatehouse, text keys in byte order.
CREATE DOMAIN k AS text COLLATE "C";

CREATE TABLE orgs (id k PRIMARY KEY, slug k NOT NULL UNIQUE, parent_id k, doc json NOT NULL);
CREATE INDEX orgs_parent ON orgs (parent_id) WHERE parent_id IS NOT NULL;

CREATE TABLE users (id k PRIMARY KEY, email_lower k NOT NULL UNIQUE, name_lower k NOT NULL, doc json NOT NULL);

CREATE TABLE memberships (
	user_id k NOT NULL,
	org_id k NOT NULL REFERENCES orgs ON DELETE CASCADE,
	member_email k NOT NULL DEFAULT '',
	member_name k NOT NULL DEFAULT '',
	doc json NOT NULL,
	PRIMARY KEY (user_id, org_id));
CREATE INDEX memberships_list ON memberships (org_id, member_email, user_id) INCLUDE (member_name);

CREATE TABLE sessions (id k PRIMARY KEY, user_id k NOT NULL, org_id k NOT NULL,
	expires_at timestamptz NOT NULL, revoked_at timestamptz, doc json NOT NULL);
CREATE INDEX sessions_user ON sessions (user_id, org_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);

CREATE TABLE signing_keys (id k PRIMARY KEY, doc json NOT NULL);

CREATE TABLE secrets (name k PRIMARY KEY, value bytea NOT NULL CHECK (octet_length(value) > 0));

CREATE TABLE once (kind k, id k, value bytea NOT NULL, expires_at timestamptz NOT NULL, PRIMARY KEY (kind, id));
CREATE INDEX once_expiry ON once (expires_at);

CREATE TABLE blobs (key k PRIMARY KEY, value bytea NOT NULL, modified timestamptz NOT NULL);

CREATE TABLE locks (name k PRIMARY KEY, owner text NOT NULL, expires_at timestamptz NOT NULL);

CREATE TABLE api_tokens (id k PRIMARY KEY, org_id k REFERENCES orgs ON DELETE CASCADE,
	created_by k REFERENCES users ON DELETE CASCADE, created_at timestamptz NOT NULL, doc json NOT NULL);
CREATE INDEX api_tokens_org ON api_tokens (org_id, created_at, id);
CREATE INDEX api_tokens_maker ON api_tokens (created_by);

CREATE TABLE invitations (id k PRIMARY KEY, org_id k NOT NULL REFERENCES orgs ON DELETE CASCADE,
	email k NOT NULL, hash k NOT NULL UNIQUE, created_by k REFERENCES users ON DELETE CASCADE,
	created_at timestamptz NOT NULL, expires_at timestamptz NOT NULL, doc json NOT NULL,
	UNIQUE (org_id, email));
CREATE INDEX invitations_org ON invitations (org_id, created_at, id);
CREATE INDEX invitations_maker ON invitations (created_by);

CREATE TABLE oidc_clients (id k PRIMARY KEY, org_id k REFERENCES orgs ON DELETE CASCADE, doc json NOT NULL);
CREATE INDEX oidc_clients_org ON oidc_clients (org_id);

CREATE TABLE refresh_families (id k PRIMARY KEY, user_id k NOT NULL REFERENCES users ON DELETE CASCADE,
	org_id k NOT NULL REFERENCES orgs ON DELETE CASCADE, session_id k,
	expires_at timestamptz NOT NULL, doc json NOT NULL);
CREATE INDEX refresh_session ON refresh_families (session_id, id) WHERE session_id IS NOT NULL;
CREATE INDEX refresh_user ON refresh_families (user_id);
CREATE INDEX refresh_org ON refresh_families (org_id);
CREATE INDEX refresh_expiry ON refresh_families (expires_at);

CREATE TABLE audit_events (org_id k NOT NULL, seq bigint NOT NULL, id k NOT NULL, time timestamptz NOT NULL,
	actor k NOT NULL, action k NOT NULL, target k NOT NULL, doc json NOT NULL, PRIMARY KEY (org_id, seq));
CREATE INDEX audit_time ON audit_events (time DESC, id);
CREATE TABLE audit_heads (org_id k PRIMARY KEY, seq bigint NOT NULL, hash text NOT NULL);
