-- Apps registered at runtime (oidc_clients) and signing keys are announced
-- too, as "app:<id>" and "key:<id>": every node reloads its app registry
-- and its signing keys (its JWKS) when another node changes them, not at
-- its next periodic reread.
CREATE OR REPLACE FUNCTION notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	r record;
BEGIN
	IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
	IF TG_TABLE_NAME = 'sessions' THEN
		-- Only what ends a session: its LastSeenAt touches stay silent.
		IF TG_OP = 'DELETE' OR OLD.revoked_at IS DISTINCT FROM NEW.revoked_at OR OLD.expires_at IS DISTINCT FROM NEW.expires_at THEN
			PERFORM pg_notify('gatehouse', 'session:' || r.id);
		END IF;
	ELSIF TG_TABLE_NAME = 'users' THEN
		PERFORM pg_notify('gatehouse', 'user:' || r.id);
	ELSIF TG_TABLE_NAME = 'memberships' THEN
		PERFORM pg_notify('gatehouse', 'user:' || r.user_id);
	ELSIF TG_TABLE_NAME = 'orgs' THEN
		PERFORM pg_notify('gatehouse', 'org:' || r.id);
	ELSIF TG_TABLE_NAME = 'oidc_clients' THEN
		PERFORM pg_notify('gatehouse', 'app:' || r.id);
	ELSIF TG_TABLE_NAME = 'signing_keys' THEN
		PERFORM pg_notify('gatehouse', 'key:' || r.id);
	END IF;
	RETURN NULL;
END $$;

CREATE TRIGGER oidc_clients_notify AFTER INSERT OR UPDATE OR DELETE ON oidc_clients FOR EACH ROW EXECUTE FUNCTION notify_change();
CREATE TRIGGER signing_keys_notify AFTER INSERT OR UPDATE OR DELETE ON signing_keys FOR EACH ROW EXECUTE FUNCTION notify_change();
