-- Recovery balances hold only what is owed: a member without a row owes nothing (0).
-- Before, the posting kept a row of 0 for every member it ever paid, so the table, and every
-- night's read of it (the posting's net, the morning's outstanding recoveries), grew with the
-- history of payments. Every reader takes a missing row as 0 (`member_accounts`, verify's
-- member identity, the morning), so removing the rows of 0 changes no figure.
DELETE FROM recovery_balances WHERE recovery_due_fen = 0;
