"""GPU/CPU workers: Dramatiq broker set-up, one actor per job kind, the job runner and a warm model cache.

Nothing here needs Django or the portal's database: a worker talks to the
portal over HTTP only (REST with a worker token, CT over DICOMweb). The
embedded default runs the same actors in a thread of the portal process.
"""
