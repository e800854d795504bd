-- Each customer's e-mail address, lower-cased, so that a member's sign-in finds them by an index
-- rather than by scanning every customer. Filled for the customers stored before it by the
-- store's backfill (the `customer_emails` marker), written with each customer from then on.
CREATE TABLE in_customer_emails (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL
);
CREATE INDEX in_customer_emails_email ON in_customer_emails (email);
INSERT INTO backfill (name) VALUES ('customer_emails');
