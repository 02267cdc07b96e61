"""The review desk: web pages over the review queue for signed-in operators (issue 19)."""
