-- Signed webhooks (issue 17): an organization's hooks and the durable
-- queue of their deliveries (also the delivery log). Keep in step with
-- migrations/sqlite. A body holds names, ids and actors, never a value.
CREATE TABLE webhooks (
    id         TEXT    NOT NULL PRIMARY KEY,
    org_id     TEXT    NOT NULL REFERENCES orgs (id),
    url        TEXT    NOT NULL,
    secret     TEXT    NOT NULL,   -- HMAC-SHA256 signing key (hex), shown once at creation
    events     TEXT    NOT NULL,   -- comma-separated event names
    format     TEXT    NOT NULL,   -- coffer | slack
    created_by TEXT    NOT NULL,
    created_at BIGINT  NOT NULL
);
CREATE INDEX webhooks_org ON webhooks (org_id);

CREATE TABLE webhook_deliveries (
    id           TEXT    NOT NULL PRIMARY KEY,
    org_id       TEXT    NOT NULL REFERENCES orgs (id),
    hook_id      TEXT    NOT NULL,
    event        TEXT    NOT NULL,
    body         TEXT    NOT NULL,
    attempts     BIGINT  NOT NULL,
    next_at      BIGINT  NOT NULL,
    status       TEXT    NOT NULL,   -- pending | delivered | dead | cancelled
    last_status  BIGINT ,            -- last HTTP status code, if any
    last_error   TEXT,
    created_at   BIGINT  NOT NULL,
    delivered_at BIGINT 
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_at);
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries (org_id, hook_id, created_at);

GRANT SELECT, INSERT, UPDATE, DELETE ON webhooks, webhook_deliveries TO coffer_app;

-- Same policy as the other tenant tables (0002_identity.sql, 0016_approvals.sql).
ALTER TABLE webhooks ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhooks FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON webhooks USING (org_id = current_setting('coffer.org_id', true))
    WITH CHECK (org_id = current_setting('coffer.org_id', true));
ALTER TABLE webhook_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_deliveries FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON webhook_deliveries USING (org_id = current_setting('coffer.org_id', true))
    WITH CHECK (org_id = current_setting('coffer.org_id', true));
