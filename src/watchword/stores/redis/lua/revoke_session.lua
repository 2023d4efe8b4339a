-- Mark a session revoked and drop its cached copy, in one step.
-- Both keys carry the session id as their hash tag, so they share a slot on a cluster.
-- KEYS[1] revoked marker   KEYS[2] the cached session
-- ARGV[1] how long the marker lives (seconds)
redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
return redis.call('DEL', KEYS[2])
