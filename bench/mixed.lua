-- wrk script: cycle through a mix of pages, like readers browsing a blog.
--   wrk ... -s bench/mixed.lua http://127.0.0.1:PORT -- /path1 /path2 ...
-- The paths come after "--" so bench.py can pick real slugs and tags from the generated
-- site. Headers given to wrk with -H (e.g. "Connection: close") are kept by wrk.format.

local paths = {}
local i = 0

function init(args)
   for _, p in ipairs(args) do
      paths[#paths + 1] = p
   end
   if #paths == 0 then
      error("mixed.lua: give the paths after --")
   end
end

function request()
   i = i % #paths + 1
   return wrk.format(nil, paths[i])
end
