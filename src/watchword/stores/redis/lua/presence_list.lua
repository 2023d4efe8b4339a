-- A user's live presence entries: drop the expired ones, return the rest.
-- KEYS[1] sorted set (connection id -> expiry, epoch ms)   KEYS[2] hash (connection id -> entry)
-- ARGV[1] now (epoch ms)
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if #expired > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
  redis.call('HDEL', KEYS[2], unpack(expired))
end
local live = redis.call('ZRANGE', KEYS[1], 0, -1)
if #live == 0 then
  return {}
end
return redis.call('HMGET', KEYS[2], unpack(live))
