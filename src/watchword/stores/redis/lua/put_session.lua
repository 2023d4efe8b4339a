-- Cache a session read from the database, unless it was revoked meanwhile.
-- Atomic: a loader racing a revocation can never re-cache the revoked session.
-- Both keys carry the session id as their hash tag, so they share a slot on a cluster.
-- KEYS[1] the cached session   KEYS[2] its revoked marker
-- ARGV[1] the session as JSON  ARGV[2] TTL in seconds
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
