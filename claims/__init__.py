"""claims: pays hospitalisation benefits from nightly discharge feeds."""
