-- Single-asset PUTs, each a new asset id, with the provider's bearer token.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local token = os.getenv("BENCH_TOKEN")
local n = 0

request = function()
  n = n + 1
  local id = "put-" .. tid .. "-" .. n
  local body = '{"id":"' .. id .. '","updated_at":"2026-01-01T00:00:00Z","status":"active",'
    .. '"name":"' .. n .. ' Bench Street, Detroit, MI","price":{"amount":"52.10","currency":"USD"}}'
  return wrk.format("PUT", "/v1/assets/" .. id, {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }, body)
end
