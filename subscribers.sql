-- gazette's SQLite schema and every query it runs.
--
-- Blocks start with a marker line:
--   `-- migration: N`  applied once, in order, recorded in PRAGMA user_version.
--                      Never edit an applied migration: append a new one.
--   `-- query: NAME`   a named statement; build.rs makes it the constant NAME in
--                      store::sql, so a missing one does not compile and an
--                      unused one is a warning. Rows are read by column name:
--                      give computed and joined columns an AS name.
-- Times are Unix seconds (UTC).

-- migration: 1
CREATE TABLE feeds (
    id              INTEGER PRIMARY KEY,
    url             TEXT NOT NULL UNIQUE,   -- as written in config.toml
    name            TEXT,
    etag            TEXT,
    last_modified   TEXT,
    last_fetched_at INTEGER,
    last_status     TEXT
);

-- One row per story, keyed by its canonical URL.
CREATE TABLE stories (
    id                  INTEGER PRIMARY KEY,
    url                 TEXT NOT NULL UNIQUE,
    title               TEXT NOT NULL,
    summary             TEXT NOT NULL DEFAULT '',
    image               TEXT,
    published_at        INTEGER NOT NULL,
    published_estimated INTEGER NOT NULL DEFAULT 0,  -- 1: the feed gave no date
    first_seen_at       INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);
CREATE INDEX stories_by_published ON stories(published_at);

-- Every place a feed listed a story (a feed item). Two sections of one feed, or
-- two feeds, listing the same story give two appearances: a signal of importance.
CREATE TABLE appearances (
    id            INTEGER PRIMARY KEY,
    story_id      INTEGER NOT NULL REFERENCES stories(id),
    feed_id       INTEGER NOT NULL REFERENCES feeds(id),
    guid          TEXT NOT NULL,
    link          TEXT NOT NULL,            -- the URL as the feed gave it
    categories    TEXT NOT NULL DEFAULT '[]',  -- JSON array of strings
    first_seen_at INTEGER NOT NULL,
    UNIQUE (feed_id, guid)
);
CREATE INDEX appearances_by_story ON appearances(story_id);

-- Page views by canonical URL, imported from the site's analytics.
CREATE TABLE views (
    url   TEXT PRIMARY KEY,
    views INTEGER NOT NULL
);

CREATE TABLE subscribers (
    id         INTEGER PRIMARY KEY,
    email      TEXT NOT NULL,
    email_key  TEXT NOT NULL UNIQUE,        -- lower-cased: addresses compare case-insensitively
    name       TEXT,
    status     TEXT NOT NULL CHECK (status IN ('pending', 'active', 'unsubscribed', 'bounced', 'complained')),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX subscribers_by_status ON subscribers(status, id);

CREATE TABLE issues (
    id          INTEGER PRIMARY KEY,
    week        TEXT NOT NULL UNIQUE,       -- 2026-W06
    subject     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    finished_at INTEGER                     -- when a send left nothing pending
);

-- The delivery ledger: one row per issue x subscriber.
--   pending   not yet handed to a server (or due for a retry at next_attempt_at)
--   sending   handed to the server, reply not yet recorded; after a crash: uncertain
--   sent      the server accepted it
--   failed    permanently refused, or out of attempts
--   uncertain may or may not have arrived (a crash while sending)
--   skipped   the subscriber left before their turn
CREATE TABLE deliveries (
    issue_id        INTEGER NOT NULL REFERENCES issues(id),
    subscriber_id   INTEGER NOT NULL REFERENCES subscribers(id),
    state           TEXT NOT NULL CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'uncertain', 'skipped')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    was_uncertain   INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    smtp_reply      TEXT,
    message_id      TEXT,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (issue_id, subscriber_id)
) WITHOUT ROWID;
CREATE INDEX deliveries_by_state ON deliveries(issue_id, state, subscriber_id);

CREATE TABLE unsubscribe_events (
    id            INTEGER PRIMARY KEY,
    subscriber_id INTEGER NOT NULL REFERENCES subscribers(id),
    at            INTEGER NOT NULL,
    method        TEXT NOT NULL CHECK (method IN ('one-click', 'page', 'cli', 'bounce', 'complaint')),
    issue_id      INTEGER REFERENCES issues(id)
);
CREATE INDEX unsubscribe_events_by_subscriber ON unsubscribe_events(subscriber_id);
-- Unsubscribe mails already acted on: a mailbox is read again and again, and a
-- request read twice must not unsubscribe someone who came back since.
CREATE TABLE mail_requests_seen (
    report_key TEXT PRIMARY KEY,
    at         INTEGER NOT NULL
);

-- Who is sending an issue right now: two sends of one issue cannot both deliver.
CREATE TABLE send_locks (
    issue_id     INTEGER PRIMARY KEY REFERENCES issues(id),
    holder       TEXT NOT NULL,             -- host:pid
    acquired_at  INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
);

-- migration: 2
-- Delivery reports and complaints, one row per report read (re-reading one
-- changes nothing); addresses erased on request, kept only as a salted hash so an
-- import can never mail them again; when each delivery was claimed (ms), so an
-- audit can tell a message started before or after an unsubscribe.
CREATE TABLE bounce_events (
    id            INTEGER PRIMARY KEY,
    report_key    TEXT NOT NULL UNIQUE,     -- the report's Message-ID, or a hash of it
    subscriber_id INTEGER REFERENCES subscribers(id),
    issue_id      INTEGER REFERENCES issues(id),
    kind          TEXT NOT NULL CHECK (kind IN ('hard', 'soft', 'complaint')),
    status        TEXT,                     -- 5.1.1, 4.2.2, or the feedback type
    detail        TEXT,
    at            INTEGER NOT NULL
);
CREATE INDEX bounce_events_by_subscriber ON bounce_events(subscriber_id, kind);
CREATE TABLE suppressed (
    email_hash TEXT PRIMARY KEY,
    at         INTEGER NOT NULL
);
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO meta (key, value) VALUES ('suppression_salt', lower(hex(randomblob(16))));
ALTER TABLE deliveries ADD COLUMN claimed_at_ms INTEGER;

-- migration: 3
-- An image's size, when the feed gives it: emails set width and height on images.
ALTER TABLE stories ADD COLUMN image_width INTEGER;
ALTER TABLE stories ADD COLUMN image_height INTEGER;

-- migration: 4
-- A reader is sent the link a feed gave (appearances.link), never the canonical
-- URL; a title gazette made from an untitled item's text is marked as such;
-- comment counts from feeds (slash:comments, thr:total) are a signal.
ALTER TABLE stories ADD COLUMN title_derived INTEGER NOT NULL DEFAULT 0;
-- When a feed was last read without error: until then, what it lists is its back
-- catalogue (a failed first fetch does not count).
ALTER TABLE feeds ADD COLUMN last_ok_at INTEGER;
UPDATE feeds SET last_ok_at = last_fetched_at WHERE last_status IN ('ok', 'not modified');
ALTER TABLE appearances ADD COLUMN comments INTEGER;

-- What the site's own lists ([[signals.pages]]: "Hot this week", "Most read")
-- linked to at each fetch: a story's place on a list is a signal of importance.
CREATE TABLE listings (
    page     TEXT NOT NULL,                 -- the page's url as configured
    url      TEXT NOT NULL,                 -- a listed story's canonical URL
    position INTEGER NOT NULL,              -- 1 is the top of the list
    entries  INTEGER NOT NULL,              -- how many stories the list held
    seen_at  INTEGER NOT NULL,
    PRIMARY KEY (page, seen_at, url)
) WITHOUT ROWID;
CREATE INDEX listings_by_time ON listings(seen_at);

-- A subscriber id is never given twice: an old link (unsubscribe, "your data")
-- must never reach a new person. SQLite reuses the highest rowid after it is
-- deleted, so deletions record the highest id ever used and inserts go past it.
CREATE TRIGGER subscribers_id_high_water AFTER DELETE ON subscribers
BEGIN
    INSERT INTO meta (key, value) VALUES ('subscriber_id_high_water', OLD.id)
    ON CONFLICT (key) DO UPDATE SET value = max(CAST(value AS INTEGER), OLD.id);
END;

-- migration: 5
-- A request to subscribe, from the form: its name is applied only when its own
-- confirmation link is used (a stranger's request changes nothing about
-- anyone), and each link confirms once.
CREATE TABLE subscribe_requests (
    id            INTEGER PRIMARY KEY,
    subscriber_id INTEGER NOT NULL REFERENCES subscribers(id),
    name          TEXT,
    requested_at  INTEGER NOT NULL,
    used_at       INTEGER
);
CREATE INDEX subscribe_requests_by_subscriber ON subscribe_requests(subscriber_id);
-- Unsubscribing by mail (the mailto: of List-Unsubscribe) is a method of its own.
CREATE TABLE unsubscribe_events_v5 (
    id            INTEGER PRIMARY KEY,
    subscriber_id INTEGER NOT NULL REFERENCES subscribers(id),
    at            INTEGER NOT NULL,
    method        TEXT NOT NULL CHECK (method IN ('one-click', 'page', 'cli', 'bounce', 'complaint', 'mail')),
    issue_id      INTEGER REFERENCES issues(id)
);
INSERT INTO unsubscribe_events_v5 (id, subscriber_id, at, method, issue_id)
SELECT id, subscriber_id, at, method, issue_id FROM unsubscribe_events
WHERE subscriber_id IN (SELECT id FROM subscribers);
DROP TABLE unsubscribe_events;
ALTER TABLE unsubscribe_events_v5 RENAME TO unsubscribe_events;
CREATE INDEX unsubscribe_events_by_subscriber ON unsubscribe_events(subscriber_id);

-- migration: 6
-- An editor vouched for a week's issue: with [schedule] require_approval, only
-- an approved issue is sent, and it is frozen until unapproved.
CREATE TABLE approvals (
    week        TEXT PRIMARY KEY,           -- 2026-W06
    approved_by TEXT NOT NULL,
    approved_at INTEGER NOT NULL
);

-- migration: 7
-- A delivery the server kept deferring (4xx, timeouts) until max_attempts ran
-- out: failed for this run, tried again by the next one.
ALTER TABLE deliveries ADD COLUMN gave_up INTEGER NOT NULL DEFAULT 0;

-- migration: 8
-- Reader analytics ([analytics]) and the report. Whether an issue's mail
-- counted clicks (its links went through /c/): issues that did not say
-- nothing about what readers clicked.
ALTER TABLE issues ADD COLUMN clicks_counted INTEGER NOT NULL DEFAULT 0;
-- A departure is put down to the subscriber's last issue. Not on state: every
-- claim and every "sent" would have to move it too.
CREATE INDEX deliveries_by_subscriber ON deliveries(subscriber_id);
-- The list's size over time: a row each time someone becomes active or stops
-- being active, kept by triggers so no path can forget it; no one is named.
CREATE TABLE list_moves (
    at     INTEGER NOT NULL,
    joined INTEGER NOT NULL                 -- 1 became active, 0 stopped being active
);
CREATE INDEX list_moves_by_time ON list_moves(at);
INSERT INTO list_moves (at, joined) SELECT created_at, 1 FROM subscribers WHERE status <> 'pending';
INSERT INTO list_moves (at, joined) SELECT at, 0 FROM unsubscribe_events;
CREATE TRIGGER list_join_on_insert AFTER INSERT ON subscribers WHEN new.status = 'active'
BEGIN INSERT INTO list_moves (at, joined) VALUES (new.updated_at, 1); END;
CREATE TRIGGER list_move_on_update AFTER UPDATE OF status ON subscribers
WHEN (old.status = 'active') <> (new.status = 'active')
BEGIN INSERT INTO list_moves (at, joined) VALUES (new.updated_at, new.status = 'active'); END;
CREATE TRIGGER list_leave_on_delete AFTER DELETE ON subscribers WHEN old.status = 'active'
BEGIN INSERT INTO list_moves (at, joined) VALUES (CAST(strftime('%s', 'now') AS INTEGER), 0); END;
-- The stories an issue links to, by position,
-- fixed when its send begins: a click link names a position, so it can only
-- lead to a link the issue holds.
CREATE TABLE issue_stories (
    issue_id INTEGER NOT NULL REFERENCES issues(id),
    position INTEGER NOT NULL,
    link     TEXT NOT NULL,
    title    TEXT NOT NULL,
    topic    TEXT,
    PRIMARY KEY (issue_id, position)
) WITHOUT ROWID;
-- Clicks per story, folded in from clicks_seen when the issue's window closes
-- (and counted here directly after it).
CREATE TABLE story_clicks (
    issue_id      INTEGER NOT NULL REFERENCES issues(id),
    position      INTEGER NOT NULL,
    clicks        INTEGER NOT NULL DEFAULT 0,
    unique_clicks INTEGER NOT NULL DEFAULT 0,
    automated     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (issue_id, position)
) WITHOUT ROWID;
-- An issue's click window: while it is open, its random key hashes the copy a
-- click came from (de-duplication); when it closes the key is dropped (NULL)
-- and the hashes with it, so nothing can tie a click to a copy any more.
CREATE TABLE click_windows (
    issue_id  INTEGER PRIMARY KEY REFERENCES issues(id),
    key       BLOB,
    closes_at INTEGER NOT NULL
);
-- Clicks while the window is open: one row per copy (as a keyed hash), story
-- and kind (0 reader, 1 automated). No times: with them, a scanner's clicks
-- seconds after a delivery could point at the copy's recipient (bursts are
-- told in the server's memory).
CREATE TABLE clicks_seen (
    issue_id    INTEGER NOT NULL,
    copy        BLOB NOT NULL,
    position    INTEGER NOT NULL,
    automated   INTEGER NOT NULL,
    clicks      INTEGER NOT NULL,
    PRIMARY KEY (issue_id, copy, position, automated)
) WITHOUT ROWID;
-- Readers who clicked anything in an issue, folded in when its window closes.
CREATE TABLE issue_readers (
    issue_id INTEGER PRIMARY KEY REFERENCES issues(id),
    readers  INTEGER NOT NULL
);
-- Only with [analytics] per_subscriber = true: who opened which story.
CREATE TABLE subscriber_clicks (
    subscriber_id INTEGER NOT NULL REFERENCES subscribers(id),
    issue_id      INTEGER NOT NULL REFERENCES issues(id),
    position      INTEGER NOT NULL,
    at            INTEGER NOT NULL,
    PRIMARY KEY (subscriber_id, issue_id, position)
) WITHOUT ROWID;

-- query: feed_upsert
INSERT INTO feeds (url, name) VALUES (?1, ?2)
ON CONFLICT (url) DO UPDATE SET name = excluded.name
RETURNING id, etag, last_modified, last_ok_at;

-- query: feed_record_fetch
UPDATE feeds
SET etag = coalesce(:etag, etag), last_modified = coalesce(:last_modified, last_modified),
    last_fetched_at = :at, last_status = :status,
    last_ok_at = CASE WHEN :status IN ('ok', 'not modified') THEN :at ELSE last_ok_at END
WHERE id = :id;

-- query: appearance_story
SELECT story_id FROM appearances WHERE feed_id = ?1 AND guid = ?2;

-- query: story_by_url
SELECT id FROM stories WHERE url = ?1;

-- query: story_insert
INSERT INTO stories (url, title, summary, image, published_at, published_estimated, first_seen_at, updated_at, image_width, image_height, title_derived)
VALUES (:url, :title, :summary, :image, :published_at, :estimated, :now, :now, :image_width, :image_height, :title_derived)
RETURNING id;

-- A feed's later version of an item refreshes the text; a date the feed gives
-- replaces one we estimated from first sight, never the other way round.
-- query: story_update
UPDATE stories
SET title = :title, title_derived = :title_derived, summary = CASE WHEN :summary <> '' THEN :summary ELSE summary END,
    image = coalesce(:image, image),
    image_width = CASE WHEN :image IS NOT NULL THEN :image_width ELSE image_width END,
    image_height = CASE WHEN :image IS NOT NULL THEN :image_height ELSE image_height END,
    published_at = CASE WHEN :estimated = 0 THEN :published_at ELSE published_at END,
    published_estimated = min(published_estimated, :estimated),
    updated_at = :now
WHERE id = :id
  AND (title <> :title OR (:summary <> '' AND summary <> :summary)
       OR (:image IS NOT NULL AND (image IS NOT :image OR image_width IS NOT :image_width))
       OR (:estimated = 0 AND (published_at <> :published_at OR published_estimated = 1)));

-- query: appearance_upsert
INSERT INTO appearances (story_id, feed_id, guid, link, categories, first_seen_at, comments)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
ON CONFLICT (feed_id, guid) DO UPDATE SET link = excluded.link, categories = excluded.categories,
    comments = coalesce(excluded.comments, comments);

-- query: stories_published_between
SELECT s.id AS id, s.url AS url, s.title AS title, s.summary AS summary, s.image AS image,
       s.published_at AS published_at, s.published_estimated AS published_estimated,
       count(a.id) AS appearances, group_concat(DISTINCT coalesce(f.name, f.url)) AS sources,
       json_group_array(json(a.categories)) AS category_lists,
       json_group_array(a.link) AS links, max(a.comments) AS comments,
       s.image_width AS image_width, s.image_height AS image_height,
       s.title_derived AS title_derived
FROM stories s
JOIN appearances a ON a.story_id = s.id
JOIN feeds f ON f.id = a.feed_id
WHERE s.published_at >= ?1 AND s.published_at < ?2
GROUP BY s.id
ORDER BY s.id;

-- query: story_with_url
SELECT s.id AS id, s.url AS url, s.title AS title, s.summary AS summary, s.image AS image,
       s.published_at AS published_at, s.published_estimated AS published_estimated,
       count(a.id) AS appearances, group_concat(DISTINCT coalesce(f.name, f.url)) AS sources,
       json_group_array(json(a.categories)) AS category_lists,
       json_group_array(a.link) AS links, max(a.comments) AS comments,
       s.image_width AS image_width, s.image_height AS image_height,
       s.title_derived AS title_derived
FROM stories s
JOIN appearances a ON a.story_id = s.id
JOIN feeds f ON f.id = a.feed_id
WHERE s.url = ?1
GROUP BY s.id;

-- query: views_upsert
INSERT INTO views (url, views) VALUES (?1, ?2)
ON CONFLICT (url) DO UPDATE SET views = excluded.views;

-- query: views_all
SELECT url, views FROM views;

-- query: subscriber_insert
INSERT INTO subscribers (id, email, email_key, name, status, created_at, updated_at)
VALUES (
    max(coalesce((SELECT max(id) FROM subscribers), 0),
        coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'subscriber_id_high_water'), 0)) + 1,
    ?1, ?2, ?3, ?4, ?5, ?5)
ON CONFLICT (email_key) DO NOTHING;

-- query: subscriber_by_email
SELECT id, email, name, status, created_at FROM subscribers WHERE email_key = ?1;

-- query: subscriber_by_id
SELECT id, email, name, status, created_at FROM subscribers WHERE id = ?1;

-- query: subscriber_set_status
UPDATE subscribers SET status = ?2, updated_at = ?3 WHERE id = ?1 AND status <> ?2;

-- query: subscribers_page
SELECT id, email, name, status, created_at FROM subscribers
WHERE (?1 IS NULL OR status = ?1) AND id > ?2
ORDER BY id LIMIT ?3;

-- query: subscribers_count_by_status
SELECT status, count(*) AS subscribers FROM subscribers GROUP BY status ORDER BY status;

-- query: subscriber_delete
DELETE FROM subscribers WHERE id = ?1;

-- query: subscriber_delete_events
DELETE FROM unsubscribe_events WHERE subscriber_id = ?1;

-- query: subscriber_delete_deliveries
DELETE FROM deliveries WHERE subscriber_id = ?1;

-- query: unsubscribe_event_insert
INSERT INTO unsubscribe_events (subscriber_id, at, method, issue_id) VALUES (?1, ?2, ?3, ?4);

-- query: issue_upsert
INSERT INTO issues (week, subject, created_at) VALUES (?1, ?2, ?3)
ON CONFLICT (week) DO UPDATE SET subject = excluded.subject
RETURNING id;

-- query: issue_finish
UPDATE issues SET finished_at = ?2 WHERE id = ?1;

-- query: lock_get
SELECT holder, acquired_at, heartbeat_at FROM send_locks WHERE issue_id = ?1;

-- query: lock_put
INSERT INTO send_locks (issue_id, holder, acquired_at, heartbeat_at) VALUES (?1, ?2, ?3, ?3)
ON CONFLICT (issue_id) DO UPDATE SET holder = excluded.holder, acquired_at = excluded.acquired_at,
    heartbeat_at = excluded.heartbeat_at;

-- query: lock_heartbeat
UPDATE send_locks SET heartbeat_at = ?3 WHERE issue_id = ?1 AND holder = ?2;

-- query: lock_release
DELETE FROM send_locks WHERE issue_id = ?1 AND holder = ?2;

-- Every active subscriber gets a row; rows already there are left alone.
-- query: deliveries_enrol
INSERT INTO deliveries (issue_id, subscriber_id, state, updated_at)
SELECT ?1, id, 'pending', ?2 FROM subscribers WHERE status = 'active'
ON CONFLICT (issue_id, subscriber_id) DO NOTHING;

-- A crash left these handed to the server with no reply recorded.
-- query: deliveries_mark_uncertain
UPDATE deliveries SET state = 'uncertain', was_uncertain = 1, updated_at = ?2,
    last_error = 'in flight when a previous send stopped'
WHERE issue_id = ?1 AND state = 'sending';

-- query: deliveries_resend_uncertain
UPDATE deliveries SET state = 'pending', next_attempt_at = 0, updated_at = ?2
WHERE issue_id = ?1 AND state = 'uncertain';

-- query: deliveries_due
SELECT d.subscriber_id AS subscriber_id, s.email AS email, s.name AS name, d.attempts AS attempts
FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id
WHERE d.issue_id = :issue AND d.state = 'pending' AND d.next_attempt_at <= :now AND d.subscriber_id > :after
ORDER BY d.subscriber_id LIMIT :limit;

-- query: deliveries_next_retry_at
SELECT min(next_attempt_at) AS next_attempt_at FROM deliveries WHERE issue_id = ?1 AND state = 'pending';

-- Claims one delivery for sending, only while the subscriber is still active: an
-- unsubscribe committed before this statement means no message.
-- query: delivery_claim
UPDATE deliveries SET state = 'sending', attempts = attempts + 1, updated_at = ?3,
    claimed_at_ms = CAST(unixepoch('subsec') * 1000 AS INTEGER)
WHERE issue_id = ?1 AND subscriber_id = ?2 AND state = 'pending'
  AND EXISTS (SELECT 1 FROM subscribers WHERE id = ?2 AND status = 'active');

-- query: delivery_skip_inactive
UPDATE deliveries SET state = 'skipped', updated_at = ?3, last_error = 'subscriber is no longer active'
WHERE issue_id = ?1 AND subscriber_id = ?2 AND state = 'pending'
  AND NOT EXISTS (SELECT 1 FROM subscribers WHERE id = ?2 AND status = 'active');

-- query: delivery_sent
UPDATE deliveries SET state = 'sent', smtp_reply = ?3, message_id = ?4, last_error = NULL, updated_at = ?5
WHERE issue_id = ?1 AND subscriber_id = ?2;

-- query: delivery_retry
UPDATE deliveries SET state = 'pending', last_error = :error, smtp_reply = :reply,
    next_attempt_at = :due, updated_at = :now
WHERE issue_id = :issue AND subscriber_id = :subscriber;

-- query: delivery_failed
UPDATE deliveries SET state = 'failed', last_error = ?3, smtp_reply = ?4, updated_at = ?5, gave_up = ?6
WHERE issue_id = ?1 AND subscriber_id = ?2;

-- Deliveries the last run gave up on after deferrals: this run tries them again.
-- query: deliveries_requeue_gave_up
UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = 0, gave_up = 0, updated_at = ?2
WHERE issue_id = ?1 AND state = 'failed' AND gave_up = 1;

-- query: deliveries_count_by_state
SELECT state, count(*) AS deliveries, sum(was_uncertain) AS were_uncertain, sum(gave_up) AS gave_up
FROM deliveries WHERE issue_id = ?1 GROUP BY state;

-- query: deliveries_uncertain_emails
SELECT s.email AS email FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id
WHERE d.issue_id = ?1 AND (d.state = 'uncertain' OR d.was_uncertain = 1) ORDER BY s.id LIMIT ?2;

-- query: deliveries_would_receive
SELECT s.id AS id, s.email AS email FROM subscribers s
LEFT JOIN deliveries d ON d.subscriber_id = s.id AND d.issue_id = ?1
WHERE s.status = 'active' AND (d.state IS NULL OR d.state = 'pending' OR (d.state = 'failed' AND d.gave_up = 1))
  AND s.id > ?2
ORDER BY s.id LIMIT ?3;

-- query: bounce_event_insert
INSERT INTO bounce_events (report_key, subscriber_id, issue_id, kind, status, detail, at)
VALUES (:key, :subscriber, :issue, :kind, :status, :detail, :at)
ON CONFLICT (report_key) DO NOTHING;

-- Soft bounces of a subscriber, counted once per issue.
-- query: soft_bounce_issues
SELECT count(DISTINCT coalesce(issue_id, -id)) AS issues FROM bounce_events WHERE subscriber_id = ?1 AND kind = 'soft';

-- query: delivery_by_message_id
SELECT issue_id, subscriber_id FROM deliveries WHERE message_id = ?1;

-- query: suppression_salt
SELECT value FROM meta WHERE key = 'suppression_salt';

-- query: suppressed_insert
INSERT INTO suppressed (email_hash, at) VALUES (?1, ?2) ON CONFLICT (email_hash) DO NOTHING;

-- query: suppressed_get
SELECT 1 FROM suppressed WHERE email_hash = ?1;

-- query: suppressed_delete
DELETE FROM suppressed WHERE email_hash = ?1;

-- query: export_deliveries
SELECT i.week AS week, d.state AS state, d.attempts AS attempts, d.last_error AS last_error,
       d.smtp_reply AS smtp_reply, d.message_id AS message_id, d.updated_at AS updated_at
FROM deliveries d JOIN issues i ON i.id = d.issue_id WHERE d.subscriber_id = ?1 ORDER BY i.week;

-- query: export_unsubscribe_events
SELECT e.at AS at, e.method AS method, i.week AS week FROM unsubscribe_events e LEFT JOIN issues i ON i.id = e.issue_id
WHERE e.subscriber_id = ?1 ORDER BY e.id;

-- query: export_bounce_events
SELECT b.at AS at, b.kind AS kind, b.status AS status, b.detail AS detail, i.week AS week FROM bounce_events b LEFT JOIN issues i ON i.id = b.issue_id
WHERE b.subscriber_id = ?1 ORDER BY b.id;

-- query: subscriber_delete_bounces
DELETE FROM bounce_events WHERE subscriber_id = ?1;

-- query: issue_by_week
SELECT id FROM issues WHERE week = ?1;

-- A send of this week has begun once it has any delivery row.
-- query: issue_send_started
SELECT count(*) > 0 AS started FROM issues i JOIN deliveries d ON d.issue_id = i.id WHERE i.week = ?1;

-- query: approval_get
SELECT approved_by, approved_at FROM approvals WHERE week = ?1;

-- query: approval_put
INSERT INTO approvals (week, approved_by, approved_at) VALUES (?1, ?2, ?3)
ON CONFLICT (week) DO UPDATE SET approved_by = excluded.approved_by, approved_at = excluded.approved_at;

-- query: approval_delete
DELETE FROM approvals WHERE week = ?1;

-- query: stories_recent_times
SELECT published_at FROM stories ORDER BY published_at DESC LIMIT ?1;

-- query: stories_count_between
SELECT count(*) AS stories FROM stories WHERE published_at >= ?1 AND published_at < ?2;

-- query: issue_finished
SELECT finished_at IS NOT NULL AS finished FROM issues WHERE week = ?1;

-- Weeks whose issue reached at least one subscriber, newest first.
-- query: issues_sent
SELECT week, subject FROM issues i
WHERE EXISTS (SELECT 1 FROM deliveries d WHERE d.issue_id = i.id AND d.state = 'sent')
ORDER BY week DESC;

-- A report is read once; a multi-recipient one is stored as <key>#0, #1, …
-- query: bounce_report_seen
SELECT (SELECT count(*) FROM bounce_events WHERE report_key IN (?1, ?1 || '#0'))
     + (SELECT count(*) FROM mail_requests_seen WHERE report_key = ?1) > 0 AS seen;

-- query: mail_request_seen_insert
INSERT INTO mail_requests_seen (report_key, at) VALUES (?1, ?2) ON CONFLICT (report_key) DO NOTHING;

-- Whether a file (a backup to restore) holds gazette's tables.
-- query: database_gazette_tables
SELECT count(*) AS tables FROM sqlite_master
WHERE type = 'table' AND name IN ('subscribers', 'deliveries', 'issues', 'stories');

-- query: database_subscriber_count
SELECT count(*) AS subscribers FROM subscribers;

-- query: listing_insert
INSERT INTO listings (page, url, position, entries, seen_at) VALUES (:page, :url, :position, :entries, :at)
ON CONFLICT (page, seen_at, url) DO NOTHING;

-- Every listing seen at or after a time, oldest first.
-- query: listings_since
SELECT page, url, position, entries, seen_at FROM listings
WHERE seen_at >= ?1
ORDER BY seen_at, page, position;

-- Headlines of stories published in [start, end): a headline that comes back
-- week after week is a recurring post.
-- query: titles_published_between
SELECT title FROM stories WHERE published_at >= ?1 AND published_at < ?2;

-- Subscriptions never confirmed, requested before a time: they expire.
-- query: subscribers_expire_pending
DELETE FROM subscribers WHERE status = 'pending' AND created_at < ?1
  AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.subscriber_id = subscribers.id)
  AND NOT EXISTS (SELECT 1 FROM unsubscribe_events e WHERE e.subscriber_id = subscribers.id)
  AND NOT EXISTS (SELECT 1 FROM bounce_events b WHERE b.subscriber_id = subscribers.id)
  AND NOT EXISTS (SELECT 1 FROM subscribe_requests r WHERE r.subscriber_id = subscribers.id);

-- query: subscribe_requests_expire
DELETE FROM subscribe_requests WHERE requested_at < ?1;

-- query: subscribe_request_insert
INSERT INTO subscribe_requests (subscriber_id, name, requested_at) VALUES (?1, ?2, ?3) RETURNING id;

-- query: subscribe_request_by_id
SELECT r.id AS id, r.subscriber_id AS subscriber_id, r.name AS name, r.requested_at AS requested_at,
       r.used_at AS used_at, s.email AS email
FROM subscribe_requests r JOIN subscribers s ON s.id = r.subscriber_id WHERE r.id = ?1;

-- query: subscribe_request_use
UPDATE subscribe_requests SET used_at = ?2 WHERE id = ?1 AND used_at IS NULL;

-- query: export_subscribe_requests
SELECT name, requested_at, used_at FROM subscribe_requests WHERE subscriber_id = ?1 ORDER BY id;

-- query: subscriber_delete_requests
DELETE FROM subscribe_requests WHERE subscriber_id = ?1;

-- query: subscriber_last_unsubscribe
SELECT max(at) AS at FROM unsubscribe_events WHERE subscriber_id = ?1;

-- query: subscriber_set_name
UPDATE subscribers SET name = ?2, updated_at = ?3 WHERE id = ?1;

-- query: issue_story_insert
INSERT INTO issue_stories (issue_id, position, link, title, topic) VALUES (?1, ?2, ?3, ?4, ?5)
ON CONFLICT (issue_id, position) DO NOTHING;

-- query: issue_stories_of
SELECT position, link, title, topic FROM issue_stories WHERE issue_id = ?1 ORDER BY position;

-- The link behind a click, with the issue's window.
-- query: click_target
SELECT s.link AS link, i.created_at AS created_at, w.key AS key, w.closes_at AS closes_at
FROM issues i JOIN issue_stories s ON s.issue_id = i.id
LEFT JOIN click_windows w ON w.issue_id = i.id
WHERE i.id = ?1 AND s.position = ?2;

-- query: click_window_open
INSERT INTO click_windows (issue_id, key, closes_at) VALUES (?1, ?2, ?3)
ON CONFLICT (issue_id) DO NOTHING;

-- query: clicks_seen_add
INSERT INTO clicks_seen (issue_id, copy, position, automated, clicks)
VALUES (?1, ?2, ?3, ?4, ?5)
ON CONFLICT (issue_id, copy, position, automated) DO UPDATE SET clicks = clicks + excluded.clicks;

-- One click of a reader's row taken back (it was a scanner's); the row goes
-- when none is left.
-- query: clicks_seen_take_back
UPDATE clicks_seen SET clicks = clicks - 1
WHERE issue_id = ?1 AND copy = ?2 AND position = ?3 AND automated = 0 AND clicks > 0;

-- query: clicks_seen_drop_empty
DELETE FROM clicks_seen WHERE issue_id = ?1 AND copy = ?2 AND position = ?3 AND clicks = 0
RETURNING position;

-- query: subscriber_click_delete
DELETE FROM subscriber_clicks WHERE subscriber_id = ?1 AND issue_id = ?2 AND position = ?3;

-- query: story_clicks_add
INSERT INTO story_clicks (issue_id, position, clicks, unique_clicks, automated)
VALUES (?1, ?2, ?3, ?4, ?5)
ON CONFLICT (issue_id, position) DO UPDATE SET clicks = clicks + excluded.clicks,
  unique_clicks = unique_clicks + excluded.unique_clicks, automated = automated + excluded.automated;

-- Windows past their end, still holding a key.
-- query: click_windows_due
SELECT issue_id FROM click_windows WHERE key IS NOT NULL AND closes_at <= ?1;

-- query: clicks_seen_fold
INSERT INTO story_clicks (issue_id, position, clicks, unique_clicks, automated)
SELECT issue_id, position,
       sum(CASE WHEN automated = 0 THEN clicks ELSE 0 END),
       sum(CASE WHEN automated = 0 THEN 1 ELSE 0 END),
       sum(CASE WHEN automated = 1 THEN clicks ELSE 0 END)
FROM clicks_seen WHERE issue_id = ?1 GROUP BY position
ON CONFLICT (issue_id, position) DO UPDATE SET clicks = clicks + excluded.clicks,
  unique_clicks = unique_clicks + excluded.unique_clicks, automated = automated + excluded.automated;

-- query: issue_readers_fold
INSERT INTO issue_readers (issue_id, readers)
SELECT ?1, count(DISTINCT copy) FROM clicks_seen WHERE issue_id = ?1 AND automated = 0
ON CONFLICT (issue_id) DO UPDATE SET readers = readers + excluded.readers;

-- Readers who clicked at least one story: folded, plus the open window's.
-- query: issue_reader_count
SELECT coalesce((SELECT readers FROM issue_readers WHERE issue_id = ?1), 0)
  + (SELECT count(DISTINCT copy) FROM clicks_seen WHERE issue_id = ?1 AND automated = 0) AS readers;

-- query: clicks_seen_delete_issue
DELETE FROM clicks_seen WHERE issue_id = ?1;

-- query: click_window_close
UPDATE click_windows SET key = NULL WHERE issue_id = ?1;

-- Clicks per story of an issue: folded counts plus the open window's.
-- query: story_click_counts
SELECT s.position AS position,
  coalesce((SELECT clicks FROM story_clicks c WHERE c.issue_id = s.issue_id AND c.position = s.position), 0)
  + coalesce((SELECT sum(clicks) FROM clicks_seen c WHERE c.issue_id = s.issue_id AND c.position = s.position AND automated = 0), 0) AS clicks,
  coalesce((SELECT unique_clicks FROM story_clicks c WHERE c.issue_id = s.issue_id AND c.position = s.position), 0)
  + coalesce((SELECT count(*) FROM clicks_seen c WHERE c.issue_id = s.issue_id AND c.position = s.position AND automated = 0), 0) AS unique_clicks,
  coalesce((SELECT automated FROM story_clicks c WHERE c.issue_id = s.issue_id AND c.position = s.position), 0)
  + coalesce((SELECT sum(clicks) FROM clicks_seen c WHERE c.issue_id = s.issue_id AND c.position = s.position AND automated = 1), 0) AS automated
FROM issue_stories s WHERE s.issue_id = ?1 ORDER BY s.position;

-- query: subscriber_click_insert
INSERT INTO subscriber_clicks (subscriber_id, issue_id, position, at)
SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM subscribers WHERE id = ?1)
ON CONFLICT (subscriber_id, issue_id, position) DO NOTHING;

-- query: export_subscriber_clicks
SELECT i.week AS week, s.title AS title, s.link AS link, c.at AS at
FROM subscriber_clicks c JOIN issues i ON i.id = c.issue_id
LEFT JOIN issue_stories s ON s.issue_id = c.issue_id AND s.position = c.position
WHERE c.subscriber_id = ?1 ORDER BY c.issue_id, c.position;

-- query: subscriber_delete_clicks
DELETE FROM subscriber_clicks WHERE subscriber_id = ?1;

-- Issues whose send began, oldest first: when each began, how many it reached,
-- whether its links counted clicks.
-- query: report_issues
SELECT i.id AS id, i.week AS week, i.subject AS subject, i.created_at AS created_at,
  i.clicks_counted AS clicks_counted,
  (SELECT count(*) FROM deliveries d WHERE d.issue_id = i.id AND d.state = 'sent') AS sent
FROM issues i WHERE EXISTS (SELECT 1 FROM deliveries d WHERE d.issue_id = i.id)
ORDER BY i.week;

-- query: issue_clicks_counted
UPDATE issues SET clicks_counted = ?2 WHERE id = ?1;

-- The link behind a story of an issue, for a click that could not be counted.
-- query: issue_story_link
SELECT s.link AS link FROM issues i JOIN issue_stories s ON s.issue_id = i.id
WHERE i.week = ?1 AND s.position = ?2;

-- Subscribers a report about an issue counts once per kind; a refusal of the
-- mailbox at sending (no report follows) is a hard bounce too.
-- query: report_bounces
SELECT kind, count(DISTINCT subscriber_id) AS subscribers FROM (
  SELECT kind, subscriber_id FROM bounce_events WHERE issue_id = ?1 AND subscriber_id IS NOT NULL
  UNION
  SELECT 'hard', e.subscriber_id FROM unsubscribe_events e
  WHERE e.issue_id = ?1 AND e.method = 'bounce'
    AND NOT EXISTS (SELECT 1 FROM bounce_events b WHERE b.issue_id = ?1 AND b.subscriber_id = e.subscriber_id)
) GROUP BY kind;

-- Unsubscribes that name the issue, or name none and came while it was the latest.
-- query: report_unsubscribes
SELECT method, count(*) AS events FROM unsubscribe_events
WHERE issue_id = ?1 OR (issue_id IS NULL AND at >= ?2 AND at < ?3) GROUP BY method;

-- query: report_list_moves_since
SELECT at, joined FROM list_moves WHERE at >= ?1;

-- query: report_active_now
SELECT count(*) AS active FROM subscribers WHERE status = 'active';

-- The last issue a subscriber was sent (NULL if none).
-- query: subscriber_last_issue
SELECT max(issue_id) AS issue_id FROM deliveries WHERE subscriber_id = ?1 AND state = 'sent';
