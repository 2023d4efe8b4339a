-- Mark a session revoked and drop its cached copy, in one step.
-- KEYS[1] revoked marker   KEYS[2] id -> hash index
-- ARGV[1] how long the marker lives (seconds)   ARGV[2] prefix of session cache keys
redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
local hash = redis.call('GET', KEYS[2])
if hash then
  redis.call('DEL', ARGV[2] .. hash)
end
redis.call('DEL', KEYS[2])
if hash then
  return 1
end
return 0
