-- An enrolment row holds its cover only: who (national_id), which plan, from when to when, its
-- chain's start and its fingerprint. The person's name, gender, birth date and payee account
-- are read from `members` alone (benefits.md, *Matching*: from their latest enrolment), so the
-- copies on every enrolment were read by nothing and cost each whole snapshot load ~2.6 CPU s
-- and ~1.6 s of its ~12 s at 10 M enrolments (ADR 0034). Fewer copies of names and accounts
-- at rest, too. A diff that cannot read the kept fingerprints compares what is kept: the
-- enrolments' cover and the members (storage/members.py).
ALTER TABLE enrollments DROP COLUMN IF EXISTS member_name;
ALTER TABLE enrollments DROP COLUMN IF EXISTS member_name_norm;
ALTER TABLE enrollments DROP COLUMN IF EXISTS gender;
ALTER TABLE enrollments DROP COLUMN IF EXISTS birth_date;
ALTER TABLE enrollments DROP COLUMN IF EXISTS payee_account;
