-- Change propagation (store.Watcher): each change that can end or alter
-- a session elsewhere is announced on the channel "gatehouse" as
-- "<kind>:<id>" when its transaction commits.
CREATE FUNCTION notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
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
	END IF;
	RETURN NULL;
END $$;

CREATE TRIGGER sessions_notify AFTER UPDATE OR DELETE ON sessions FOR EACH ROW EXECUTE FUNCTION notify_change();
CREATE TRIGGER users_notify AFTER UPDATE OR DELETE ON users FOR EACH ROW EXECUTE FUNCTION notify_change();
CREATE TRIGGER memberships_notify AFTER UPDATE OR DELETE ON memberships FOR EACH ROW EXECUTE FUNCTION notify_change();
CREATE TRIGGER orgs_notify AFTER INSERT OR UPDATE OR DELETE ON orgs FOR EACH ROW EXECUTE FUNCTION notify_change();
