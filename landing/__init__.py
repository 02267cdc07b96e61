"""Land: find ready partitions in the landing folder, check their manifests, read their files.

The landing folder belongs to the senders: nothing here ever writes to it.
"""
