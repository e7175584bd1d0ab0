-- Removes the lease an acquire left when its caller never heard the answer (the command timed
-- out while Redis was slow): sent right after the timeout on the same connection, it runs after
-- that acquire, so the lease does not hold a place until it expires.
-- KEYS[1]  session key (sorted set: member -> lease expiry)
-- ARGV[1]  the end of the member: "|<pod_id>|<connection_id>"
-- Returns how many leases were removed (0 when the acquire never ran).
local removed = 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if string.sub(member, -#ARGV[1]) == ARGV[1] then
    removed = removed + redis.call('ZREM', KEYS[1], member)
  end
end
return removed
