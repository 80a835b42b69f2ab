-- wrk script: short-link visitors, each request a random code from a list.
--   wrk ... -s bench/links.lua http://127.0.0.1:PORT -- CODES_FILE
-- CODES_FILE holds one code a line (bench.py writes every code it loaded, so the
-- requests spread over the whole table). Each wrk thread has its own Lua state and
-- reads the file in init; the seed differs per thread so the threads do not walk the
-- same sequence. Headers given with -H (e.g. "Connection: close") are kept by wrk.format.

local paths = {}
local counter = 0

function setup(thread)
   counter = counter + 1
   thread:set("seed", counter)
end

function init(args)
   local file = args[1] or error("links.lua: give the codes file after --")
   for line in io.lines(file) do
      if #line > 0 then
         paths[#paths + 1] = "/" .. line
      end
   end
   if #paths == 0 then
      error("links.lua: no codes in " .. file)
   end
   math.randomseed(os.time() * 1000 + (seed or 0))
end

function request()
   return wrk.format(nil, paths[math.random(#paths)])
end
