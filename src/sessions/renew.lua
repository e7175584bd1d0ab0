-- Extends a session's lease while this connection still holds it; re-asserts it after Redis lost it.
-- KEYS[1]  session key (sorted set: member -> lease expiry, ms on the Redis clock)
-- ARGV[1]  the member acquire.lua returned
-- ARGV[2]  lease in ms
-- ARGV[3]  how many live connections the identity may have (1 = exclusive)
-- Returns 1 renewed, 2 re-asserted (the member was gone but there is room, e.g. after a restart
-- or FLUSHALL), 0 lost (others hold every place: the caller must close its connection).
local key = KEYS[1]
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local expiry = now + tonumber(ARGV[2])
local status = 1
if redis.call('ZSCORE', key, ARGV[1]) == false then
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('ZCARD', key) >= tonumber(ARGV[3]) then
    return 0
  end
  status = 2
end
redis.call('ZADD', key, expiry, ARGV[1])
redis.call('PEXPIREAT', key, tonumber(redis.call('ZREVRANGE', key, 0, 0, 'WITHSCORES')[2]))
return status
