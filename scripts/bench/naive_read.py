#!/usr/bin/env python3
"""The naive way to read current state: one `GET /api/incidents/{id}` per managed incident (the
ids are the names of REPO/incidents/<id>.yaml), over one keep-alive HTTP connection, bearer
token from INCIDENTOPS_TOKEN. Prints {"calls": N, "found": K} as JSON.

    naive_read.py URL REPO
"""
import http.client, json, os, pathlib, sys, urllib.parse

url, repo = sys.argv[1], sys.argv[2]
parts = urllib.parse.urlsplit(url)
headers = {"Authorization": "Bearer " + os.environ["INCIDENTOPS_TOKEN"]}
connection = http.client.HTTPConnection(parts.hostname, parts.port)
calls = found = 0
for path in sorted(pathlib.Path(repo, "incidents").glob("*.yaml")):
    connection.request("GET", f"/api/incidents/{path.stem}", headers=headers)
    response = connection.getresponse()
    body = response.read()
    calls += 1
    if response.status == 200:
        json.loads(body)
        found += 1
    elif response.status != 404:
        sys.exit(f"naive_read.py: {path.stem}: HTTP {response.status}")
print(json.dumps({"calls": calls, "found": found}))
