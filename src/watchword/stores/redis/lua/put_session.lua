-- Cache a session read from the database, unless it was revoked meanwhile.
-- Atomic: a loader racing a revocation can never re-cache the revoked session.
-- KEYS[1] session cache key   KEYS[2] revoked marker of the session   KEYS[3] id -> hash index
-- ARGV[1] the session as JSON  ARGV[2] TTL in seconds  ARGV[3] secret hash
-- ARGV[4] prefix of session cache keys (to drop an older secret of the same session)
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
local previous = redis.call('GET', KEYS[3])
if previous and previous ~= ARGV[3] then
  redis.call('DEL', ARGV[4] .. previous)
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[2])
return 1
