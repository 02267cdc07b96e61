-- The monthly contribution per plan (operations.md, *Sustainability report*), read only by the
-- sustainability report. NULL until the next run loads a rules file that has it: the report
-- then says so instead of dividing by a contribution nobody wrote down.
ALTER TABLE plan_rules ADD COLUMN monthly_contribution_fen BIGINT;
