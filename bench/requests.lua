-- bench/requests.lua: the wrk script of bench/traffic.sh.
--
-- Each wrk thread builds, once in init(), a cycle of 2000 requests that mix
-- paths (files of several sizes, a 404, a 302, a POST answered 405),
-- Host headers and User-Agents; request() then only hands out the next one,
-- as wrk's SCRIPTING advises, so the script costs wrk almost nothing.
-- Headers given to wrk with -H (e.g. Connection: close) are kept. No HEAD
-- here: wrk would wait for the body its Content-Length announces (curl in
-- traffic.sh sends HEAD requests instead).

-- method, path, weight (out of 400 requests)
local paths = {
   {"GET",  "/robots.txt",       160}, -- 200 B
   {"GET",  "/index.html",        96}, -- 2 KB
   {"GET",  "/",                  16}, -- index.html again
   {"GET",  "/static/app.css",    52}, -- 15 KB
   {"GET",  "/static/app.js",      8}, -- 100 KB
   {"GET",  "/img/photo.jpg",      1}, -- 1 MB
   {"GET",  "/no/such/page.html", 25}, -- 404
   {"GET",  "/old",               25}, -- 302 to /index.html
   {"POST", "/robots.txt",        10}, -- 405: POST to a static file
   {"GET",  "/index.html?q=%C3%A9t%C3%A9&page=2&utm_source=bench", 7},
}

local hosts = {
   "www.example.com", "static.example.net", "10.201.0.1",
   "shop.example.org:80", "intranet.local",
}

local agents = {
   "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
   "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
   "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
   "Googlebot/2.1 (+http://www.google.com/bot.html)",
   "python-requests/2.31.0",
   false, -- no User-Agent header at all
}

local requests = {}
local n = 0
id = 0 -- set per thread by setup(), so threads start at different places

local threads = 0
function setup(thread)
   threads = threads + 1
   thread:set("id", threads)
end

function init(args)
   -- The weighted list of path indexes, 400 long.
   local pool = {}
   for i, p in ipairs(paths) do
      for _ = 1, p[3] do
         pool[#pool + 1] = i
      end
   end
   -- Walk the pool with a stride prime to its length: every 400 requests
   -- hold each path exactly as often as its weight says, well mixed.
   for i = 1, 2000 do
      local p = paths[pool[(i * 157) % #pool + 1]]
      local h = {}
      for k, v in pairs(wrk.headers) do
         h[k] = v
      end
      h["Host"] = hosts[i % #hosts + 1]
      local ua = agents[i % #agents + 1]
      if ua then
         h["User-Agent"] = ua
      end
      h["Accept"] = "*/*"
      local body = nil
      if p[1] == "POST" then
         body = "name=bench&value=" .. i
         h["Content-Type"] = "application/x-www-form-urlencoded"
      end
      requests[i] = wrk.format(p[1], p[2], h, body)
   end
   n = (id * 397) % #requests
end

function request()
   n = n % #requests + 1
   return requests[n]
end
