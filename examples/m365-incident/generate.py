#!/usr/bin/env python3
"""Write the synthetic Microsoft 365 incident dataset (see README.md).

    python3 examples/m365-incident/generate.py OUT_DIR [--check]

Standard library only. Everything is drawn from random.Random(2021), so two
runs write byte-identical files. truth.json is not typed in: it is computed
from the files just written (read back from disk), with the definitions in
README.md, and the script stops with an error unless those findings are
exactly the incident's.

--check additionally opens geoip.mmdb with the `maxminddb` reader (which is
then imported; it is not needed otherwise) and looks up addresses in, at the
edges of and outside every network.
"""

from __future__ import annotations

import argparse
import base64
import csv
import ipaddress
import json
import os
import random
import sys
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

SEED = 2021
TENANT = "contoso.com"
TENANT_ID = "4a7c3e19-8d2b-4f60-9e15-2b6d0c8f7a31"
ORG_NAME = "contoso.onmicrosoft.com"
DAY1 = datetime(2021, 6, 1, tzinfo=timezone.utc)
DAYS = 4
N_USERS = 1000
N_DUPLICATES = 37
N_ENTRA_ORDINARY = 50

UAL_HEADER = ["RecordId", "CreationDate", "RecordType", "Operation", "UserId",
              "AuditData", "AssociatedAdminUnits", "AssociatedAdminUnitsNames"]

# (network, ASN, organisation, country, city)
NETWORKS = [
    ("192.0.2.0/24", 64500, "Contoso Ltd", "GB", "London"),
    ("100.64.0.0/16", 64501, "Example Broadband", "GB", None),
    ("198.18.0.0/16", 64502, "Example Mobile", "GB", None),
    ("203.0.113.0/26", 64510, "Hosting One", "NL", "Amsterdam"),
    ("203.0.113.64/26", 64511, "VPS Two", "US", "Ashburn"),
    ("198.51.100.0/26", 64512, "Proxy Three", "SG", "Singapore"),
]
_NETS = [(ipaddress.ip_network(n), asn, org, cc, city) for n, asn, org, cc, city in NETWORKS]

VICTIMS = ["alice", "bob", "carol", "dave", "erin"]
VICTIM_NAMES = {"alice": "Alice Archer", "bob": "Bob Baker", "carol": "Carol Carter",
                "dave": "Dave Dawson", "erin": "Erin Ellis"}
ATTACKER_IPS = ["203.0.113.10", "198.51.100.20", "203.0.113.70", "198.51.100.21"]
ATTACKER_ASNS = [64510, 64511, 64512]
NEW_IP_0042 = "198.18.250.1"

LEGACY_CLIENT_APPS = {
    "IMAP4", "POP3", "Authenticated SMTP", "Exchange ActiveSync", "MAPI Over HTTP",
    "Other clients", "Exchange Web Services", "AutoDiscover", "Offline Address Book",
    "Outlook Anywhere (RPC over HTTP)",
}
RULE_OPS = {"New-InboxRule", "Set-InboxRule"}
FORWARDING_PARAMS = {"ForwardingSmtpAddress", "ForwardingAddress"}

# Well-known first-party application ids.
APP_OFFICEHOME = ("4765445b-32c6-49b0-83e6-1d93765276ca", "OfficeHome")
APP_OFFICE = ("d3590ed6-52b3-4102-aeff-aad2292ab01c", "Microsoft Office")
APP_TEAMS = ("1fec8e78-bce4-4aaf-ab1b-5451cc387264", "Microsoft Teams")
RES_EXCHANGE = ("00000002-0000-0ff1-ce00-000000000000", "Office 365 Exchange Online")
RES_SHAREPOINT = ("00000003-0000-0ff1-ce00-000000000000", "Office 365 SharePoint Online")
RES_TEAMS = ("cc15fd57-2c6c-4117-a88c-83b1d56b4bbe", "Microsoft Teams Services")

UA_DESKTOP = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/91.0.4472.77 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/91.0.4472.77 Safari/537.36 Edg/91.0.864.37",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/14.1.1 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:89.0) Gecko/20100101 Firefox/89.0",
]
UA_MOBILE = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 14_6 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/14.1.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 11; SM-G991B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/91.0.4472.77 Mobile Safari/537.36",
]
UA_PYTHON = "python-requests/2.25.1"
UA_ODD = ("Mozilla/5.0 (Windows NT 6.1; WOW64; rv:45.0) Gecko/20100101 Firefox/45.0 "
          "SeaMonkey/2.42")
UA_TEAMS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Teams/1.4.00.11161 Chrome/80.0.3987.165 Electron/8.5.1 Safari/537.36")

HOME_CITIES = ["London", "Reading", "Croydon", "Watford", "Guildford", "Slough", "Luton"]
SERVERS = ["AM6PR01MB4321", "AM6PR02MB5512", "DB7PR03MB4120", "LO2P265MB0833", "VI1PR08MB3377"]
SERVER_BUILD = "15.20.4195.026"
DOC_NAMES = ["Budget 2021.xlsx", "Q2 forecast.xlsx", "Board pack.pptx", "Onboarding.docx",
             "Minutes 2021-05.docx", "Supplier list.xlsx", "Roadmap.pptx", "Travel policy.pdf",
             "Team rota.xlsx", "Project brief.docx"]
SITES = ["Finance", "HR", "Sales", "Operations", "IT"]
MAIL_SUBJECTS = ["Re: Weekly catch-up", "Timesheet", "Re: Q2 numbers", "Meeting notes",
                 "FW: Supplier update", "Lunch on Friday?", "Re: Project plan", "Holiday cover",
                 "Re: Invoice 20417", "Draft for review"]
BURST_SUBJECT = "Shared document: Q2 invoice"


# --------------------------------------------------------------------------- helpers

def lookup(ip: str):
    """(asn, organisation, country, city) of an address, or None (as geoip.mmdb answers)."""
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return None
    for net, asn, org, cc, city in _NETS:
        if a.version == net.version and a in net:
            return asn, org, cc, city
    return None


def asn_of(ip: str):
    hit = lookup(ip)
    return hit[0] if hit else None


def strip_port(value: str) -> str:
    """'203.0.113.10:51234' -> '203.0.113.10'; '[2001:db8::1]:443' -> '2001:db8::1'."""
    value = (value or "").strip()
    if value.startswith("["):
        return value[1:value.index("]")] if "]" in value else value[1:]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


def iso_audit(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S")


def iso_z(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(s: str) -> datetime:
    s = s.strip()
    if s.endswith("Z"):
        s = s[:-1]
    if "." in s:
        s = s.split(".", 1)[0]
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)


def day_start(day: int) -> datetime:
    return DAY1 + timedelta(days=day - 1)


def at(day: int, h: int, m: int, s: int = 0) -> datetime:
    return day_start(day) + timedelta(hours=h, minutes=m, seconds=s)


# --------------------------------------------------------------------------- MaxMind DB writer

class U16(int):
    pass


class U32(int):
    pass


class U64(int):
    pass


def _control(type_no: int, size: int) -> bytes:
    if size < 29:
        first, ext = size, b""
    elif size < 29 + 256:
        first, ext = 29, bytes([size - 29])
    elif size < 285 + 65536:
        first, ext = 30, (size - 285).to_bytes(2, "big")
    else:
        first, ext = 31, (size - 65821).to_bytes(3, "big")
    if type_no <= 7:
        return bytes([(type_no << 5) | first]) + ext
    return bytes([first, type_no - 7]) + ext


def _uint(type_no: int, value: int, width: int) -> bytes:
    if value < 0 or value >= 1 << (8 * width):
        raise ValueError(f"{value} does not fit {width} bytes")
    payload = value.to_bytes(width, "big").lstrip(b"\x00")
    return _control(type_no, len(payload)) + payload


def mmdb_encode(value) -> bytes:
    """One value in the MaxMind DB data section format (spec 2.0)."""
    if isinstance(value, bool):
        return _control(14, 1 if value else 0)
    if isinstance(value, U16):
        return _uint(5, value, 2)
    if isinstance(value, U32):
        return _uint(6, value, 4)
    if isinstance(value, U64):
        return _uint(9, value, 8)
    if isinstance(value, str):
        raw = value.encode("utf-8")
        return _control(2, len(raw)) + raw
    if isinstance(value, dict):
        out = bytearray(_control(7, len(value)))
        for k, v in value.items():
            out += mmdb_encode(str(k))
            out += mmdb_encode(v)
        return bytes(out)
    if isinstance(value, list):
        out = bytearray(_control(11, len(value)))
        for v in value:
            out += mmdb_encode(v)
        return bytes(out)
    raise TypeError(f"no MaxMind DB encoding chosen for {type(value).__name__}")


def build_mmdb(networks, record_size: int = 24, build_epoch: int = 0) -> bytes:
    """An IPv6 tree with the IPv4 networks under ::/96 (the IPv4-in-IPv6 subtree)."""
    if record_size != 24:
        raise ValueError("this writer emits 24-bit records")
    data = bytearray()
    leaves = []
    for cidr, record in networks:
        net = ipaddress.ip_network(cidr)
        if net.version == 4:
            bits, plen = int(net.network_address), 96 + net.prefixlen
        else:
            bits, plen = int(net.network_address), net.prefixlen
        leaves.append((bits, plen, len(data)))
        data += mmdb_encode(record)

    # nodes[i] = [left, right]; each None (empty), ("n", index) or ("d", data offset)
    nodes = [[None, None]]
    for bits, plen, offset in leaves:
        node = 0
        for depth in range(plen):
            bit = (bits >> (127 - depth)) & 1
            slot = nodes[node][bit]
            if depth == plen - 1:
                if slot is not None:
                    raise ValueError("overlapping networks")
                nodes[node][bit] = ("d", offset)
            else:
                if slot is None:
                    nodes.append([None, None])
                    slot = ("n", len(nodes) - 1)
                    nodes[node][bit] = slot
                elif slot[0] == "d":
                    raise ValueError("overlapping networks")
                node = slot[1]

    node_count = len(nodes)

    def record_value(slot) -> int:
        if slot is None:
            return node_count
        if slot[0] == "n":
            return slot[1]
        return node_count + 16 + slot[1]

    tree = bytearray()
    for left, right in nodes:
        for slot in (left, right):
            v = record_value(slot)
            if v >= 1 << 24:
                raise ValueError("record does not fit 24 bits")
            tree += v.to_bytes(3, "big")

    metadata = {
        "binary_format_major_version": U16(2),
        "binary_format_minor_version": U16(0),
        "build_epoch": U64(build_epoch),
        "database_type": "custody-example-asn-country",
        "description": {"en": "custody example: ASN and country of the m365-incident "
                              "dataset's documentation and shared address space networks"},
        "ip_version": U16(6),
        "languages": [],
        "node_count": U32(node_count),
        "record_size": U16(record_size),
    }
    return (bytes(tree) + b"\x00" * 16 + bytes(data)
            + b"\xab\xcd\xefMaxMind.com" + mmdb_encode(metadata))


def mmdb_networks():
    return [(cidr, {"autonomous_system_number": U32(asn),
                    "autonomous_system_organization": org,
                    "country": {"iso_code": cc}})
            for cidr, asn, org, cc, _city in NETWORKS]


# --------------------------------------------------------------------------- the story

class User:
    def __init__(self, name, display, oid, puid, office=None, home=None, mobile=None,
                 home_city="London"):
        self.name = name
        self.upn = f"{name}@{TENANT}"
        self.display = display
        self.oid = oid
        self.puid = puid
        self.office = office
        self.home = home
        self.mobile = mobile
        self.home_city = home_city
        self.sources = [ip for ip in (office, home, mobile) if ip]
        self.server = None
        self.ua = None


class Generator:
    def __init__(self):
        self.rng = random.Random(SEED)
        self.ual = []      # [time, seq, record type name, AuditData dict]
        self.entra = []    # [time, seq, sign-in dict]
        self.seq = 0
        self.expect = {}   # ids the incident is built from, to check the derived findings

    # ---- primitives
    def guid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def rand_between(self, lo: datetime, hi: datetime) -> datetime:
        span = int((hi - lo).total_seconds())
        return lo + timedelta(seconds=self.rng.randint(0, max(span, 0)))

    def item_id(self, prefix: str) -> str:
        raw = bytes(self.rng.getrandbits(8) for _ in range(66))
        return prefix + base64.b64encode(raw).decode("ascii")

    def msg_id(self, domain=TENANT) -> str:
        core = "".join(self.rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(22))
        return f"<{core}@{self.rng.choice(SERVERS).lower()}.eurprd01.prod.outlook.com>"

    def add_ual(self, t, type_name, audit) -> str:
        self.ual.append([t, self.seq, type_name, audit])
        self.seq += 1
        return audit["Id"]

    def add_entra(self, t, signin) -> str:
        self.entra.append([t, self.seq, signin])
        self.seq += 1
        return signin["id"]

    def _common(self, t, op, record_type, workload, user_key, user_type=0):
        return {
            "CreationTime": iso_audit(t),
            "Id": self.guid(),
            "Operation": op,
            "OrganizationId": TENANT_ID,
            "RecordType": record_type,
            "ResultStatus": None,
            "UserKey": user_key,
            "UserType": user_type,
            "Version": 1,
            "Workload": workload,
        }

    def _exchange_mailbox_fields(self, u, ip, client_info):
        return {
            "AppId": "00000002-0000-0ff1-ce00-000000000000",
            "ClientAppId": "",
            "ClientIPAddress": ip,
            "ClientInfoString": client_info,
            "ExternalAccess": False,
            "InternalLogonType": 0,
            "LogonType": 0,
            "LogonUserSid": u.sid,
            "MailboxGuid": u.mailbox_guid,
            "MailboxOwnerSid": u.sid,
            "MailboxOwnerUPN": u.upn,
            "OrganizationName": ORG_NAME,
            "OriginatingServer": f"{u.server} ({SERVER_BUILD})\r\n",
            "SessionId": self.guid(),
        }

    # ---- UAL records
    def ual_signin(self, u, t, ip, ok=True, ua=None, app=APP_OFFICEHOME, resource=RES_EXCHANGE):
        ua = ua or u.ua
        a = self._common(t, "UserLoggedIn" if ok else "UserLoginFailed", 15,
                         "AzureActiveDirectory", u.oid)
        a["ResultStatus"] = "Success" if ok else "Failed"
        a.update({
            "ClientIP": ip,
            "ObjectId": resource[0],
            "UserId": u.upn,
            "AzureActiveDirectoryEventType": 1,
            "ExtendedProperties": [
                {"Name": "ResultStatusDetail", "Value": "Success" if ok else "UserError"},
                {"Name": "UserAgent", "Value": ua},
                {"Name": "RequestType", "Value": "OAuth2:Authorize"},
            ],
            "ModifiedProperties": [],
            "Actor": [{"ID": u.oid, "Type": 0}, {"ID": u.upn, "Type": 5}],
            "ActorContextId": TENANT_ID,
            "ActorIpAddress": ip,
            "InterSystemsId": self.guid(),
            "IntraSystemId": self.guid(),
            "SupportTicketId": "",
            "Target": [{"ID": resource[0], "Type": 0}],
            "TargetContextId": TENANT_ID,
            "ApplicationId": app[0],
            "DeviceProperties": [
                {"Name": "OS", "Value": "Windows10" if "Windows" in ua else "Other"},
                {"Name": "BrowserType", "Value": "Other" if "Mozilla" not in ua else
                 ("Edge" if "Edg/" in ua else "Chrome" if "Chrome" in ua else
                  "Firefox" if "Firefox" in ua else "Safari")},
            ],
        })
        if not ok:
            a["LogonError"] = "InvalidPassword"
            a["ErrorNumber"] = "50126"
        else:
            a["ErrorNumber"] = "0"
        return self.add_ual(t, "AzureActiveDirectoryStsLogon", a)

    def ual_inbox_rule(self, u, t, ip, name, params):
        a = self._common(t, "New-InboxRule", 1, "Exchange", u.puid, user_type=2)
        a["ResultStatus"] = "True"
        a.update({
            "ClientIP": f"{ip}:{self.rng.randint(49152, 65535)}",
            "ObjectId": f"{u.upn}\\{name}",
            "UserId": u.upn,
            "AppId": "",
            "ClientAppId": "",
            "ExternalAccess": False,
            "OrganizationName": ORG_NAME,
            "OriginatingServer": f"{u.server} ({SERVER_BUILD})",
            "Parameters": [{"Name": "Name", "Value": name}] + params,
            "SessionId": self.guid(),
        })
        return self.add_ual(t, "ExchangeAdmin", a)

    def ual_set_mailbox_forward(self, u, t, ip, target):
        a = self._common(t, "Set-Mailbox", 1, "Exchange", u.puid, user_type=2)
        a["ResultStatus"] = "True"
        a.update({
            "ClientIP": f"{ip}:{self.rng.randint(49152, 65535)}",
            "ObjectId": u.upn,
            "UserId": u.upn,
            "AppId": "",
            "ClientAppId": "",
            "ExternalAccess": False,
            "OrganizationName": ORG_NAME,
            "OriginatingServer": f"{u.server} ({SERVER_BUILD})",
            "Parameters": [
                {"Name": "Identity", "Value": u.upn},
                {"Name": "ForwardingSmtpAddress", "Value": f"smtp:{target}"},
                {"Name": "DeliverToMailboxAndForward", "Value": "True"},
            ],
            "SessionId": self.guid(),
        })
        return self.add_ual(t, "ExchangeAdmin", a)

    def ual_send(self, u, t, ip, subject, ua=None):
        a = self._common(t, "Send", 2, "Exchange", u.puid)
        a["ResultStatus"] = "Succeeded"
        a["UserId"] = u.upn
        a.update(self._exchange_mailbox_fields(u, ip, f"Client=OWA;{ua or u.ua};"))
        a["Item"] = {
            "Id": self.item_id("RgAAAA"),
            "InternetMessageId": self.msg_id(),
            "ParentFolder": {"Id": u.sent_folder, "Path": "\\Sent Items"},
            "SizeInBytes": self.rng.randint(9000, 160000),
            "Subject": subject,
        }
        return self.add_ual(t, "ExchangeItem", a)

    def ual_mail_items_accessed(self, u, t, ip, ua=None, count=None):
        n = count or self.rng.randint(1, 4)
        a = self._common(t, "MailItemsAccessed", 50, "Exchange", u.puid)
        a["ResultStatus"] = "Succeeded"
        a["UserId"] = u.upn
        a.update(self._exchange_mailbox_fields(u, ip, f"Client=OWA;{ua or u.ua};"))
        a["OperationProperties"] = [{"Name": "MailAccessType", "Value": "Bind"},
                                    {"Name": "IsThrottled", "Value": "False"}]
        a["Folders"] = [{
            "FolderItems": [{"InternetMessageId": self.msg_id()} for _ in range(n)],
            "Id": u.inbox_folder,
            "Path": "\\Inbox",
        }]
        a["OperationCount"] = n
        return self.add_ual(t, "ExchangeItemAggregated", a)

    def ual_file_accessed(self, u, t, ip, ua=None):
        doc = self.rng.choice(DOC_NAMES)
        if self.rng.random() < 0.6:
            workload = "OneDrive"
            site_url = f"https://contoso-my.sharepoint.com/personal/{u.name}_contoso_com/"
            rel = "Documents"
        else:
            workload = "SharePoint"
            site_url = f"https://contoso.sharepoint.com/sites/{self.rng.choice(SITES)}/"
            rel = "Shared Documents"
        a = self._common(t, "FileAccessed", 6, workload,
                         f"i:0h.f|membership|{u.puid.lower()}@live.com")
        del a["ResultStatus"]
        a.update({
            "ClientIP": ip,
            "ObjectId": f"{site_url}{rel}/{doc}",
            "UserId": u.upn,
            "CorrelationId": self.guid(),
            "EventSource": "SharePoint",
            "ItemType": "File",
            "ListId": self.guid(),
            "ListItemUniqueId": self.guid(),
            "Site": self.guid(),
            "UserAgent": ua or u.ua,
            "WebId": self.guid(),
            "SourceFileExtension": doc.rsplit(".", 1)[1],
            "SiteUrl": site_url,
            "SourceFileName": doc,
            "SourceRelativeUrl": rel,
        })
        return self.add_ual(t, "SharePointFileOperation", a)

    def ual_teams_session(self, u, t, ip, ua=UA_TEAMS):
        a = self._common(t, "TeamsSessionStarted", 25, "MicrosoftTeams", u.oid)
        del a["ResultStatus"]
        a.update({
            "ClientIP": ip,
            "UserId": u.upn,
            "ExtraProperties": [{"Key": "UserAgent", "Value": ua},
                                {"Key": "TimeZone", "Value": "Europe/London"}],
        })
        return self.add_ual(t, "MicrosoftTeams", a)

    # ---- Entra sign-ins
    def entra_signin(self, u, t, ip, client_app="Browser", error=0, app=APP_OFFICEHOME,
                     resource=RES_EXCHANGE, interactive=True):
        reasons = {
            0: ("Other.", None),
            50126: ("Error validating credentials due to invalid username or password.",
                    "The user didn't enter the right credentials. It's expected to see some "
                    "number of these errors in your logs due to users making mistakes."),
            50053: ("Account is locked because user tried to sign in too many times with an "
                    "incorrect user ID or password.",
                    "The account is locked (Smart Lockout): too many sign-in attempts with an "
                    "incorrect user ID or password."),
        }
        failure_reason, details = reasons[error]
        hit = lookup(ip)
        city = (hit[3] or u.home_city) if hit else None
        s = {
            "id": self.guid(),
            "createdDateTime": iso_z(t),
            "userDisplayName": u.display,
            "userPrincipalName": u.upn,
            "userId": u.oid,
            "appId": app[0],
            "appDisplayName": app[1],
            "ipAddress": ip,
            "clientAppUsed": client_app,
            "correlationId": self.guid(),
            "conditionalAccessStatus": "notApplied",
            "isInteractive": interactive,
            "resourceDisplayName": resource[1],
            "resourceId": resource[0],
            "tenantId": TENANT_ID,
            "status": {"errorCode": error, "failureReason": failure_reason,
                       "additionalDetails": details},
            "location": {"city": city, "countryOrRegion": hit[2] if hit else None},
        }
        return self.add_entra(t, s)

    # ---- people
    def make_user(self, name, display, office, home, mobile):
        u = User(name, display, self.guid(), f"10032000{self.rng.getrandbits(32):08X}",
                 office, home, mobile, self.rng.choice(HOME_CITIES))
        u.server = self.rng.choice(SERVERS)
        u.sid = "S-1-5-21-{}-{}-{}-{}".format(*(self.rng.randint(10 ** 8, 4 * 10 ** 9)
                                                for _ in range(3)), self.rng.randint(1100, 99999))
        u.mailbox_guid = self.guid()
        u.inbox_folder = self.item_id("LgAAAA")[:60]
        u.sent_folder = self.item_id("LgAAAA")[:60]
        u.ua = self.rng.choice(UA_DESKTOP)
        u.mobile_ua = self.rng.choice(UA_MOBILE)
        return u

    def make_people(self):
        rng = self.rng
        homes = [f"100.64.{x // 254}.{x % 254 + 1}" for x in rng.sample(range(256 * 254), 1100)]
        mobiles = [f"198.18.{x // 254}.{x % 254 + 1}" for x in rng.sample(range(250 * 254), 400)]
        self.users = []
        for i in range(1, N_USERS + 1):
            name = f"user{i:04d}"
            r = rng.random()
            office = f"192.0.2.{rng.randint(1, 20)}"
            has_office, has_home = (True, True) if r < 0.6 else (True, False) if r < 0.8 \
                else (False, True)
            has_mobile = rng.random() < 0.25
            if name in ("user0042", "user0100"):
                has_home = True
            if name == "user0042":
                has_office, has_mobile = True, False
            u = self.make_user(name, f"User {i:04d}",
                               office if has_office else None,
                               homes.pop() if has_home else None,
                               mobiles.pop() if has_mobile else None)
            self.users.append(u)
        self.by_name = {u.name: u for u in self.users}
        self.victims = {}
        for name in VICTIMS:
            self.victims[name] = self.make_user(name, VICTIM_NAMES[name],
                                                f"192.0.2.{rng.randint(1, 20)}",
                                                homes.pop(), None)

    # ---- ordinary behaviour
    def pick_source(self, u, t):
        if u.office and 8 <= t.hour < 18 and self.rng.random() < 0.85:
            return u.office
        if u.mobile and self.rng.random() < 0.35:
            return u.mobile
        return u.home or u.office or u.mobile

    def ua_for(self, u, ip):
        return u.mobile_ua if ip == u.mobile else u.ua

    def ordinary_day(self, u, day, lo, hi, end, baseline=None, sends_max=5):
        """Sign-ins from the user's own sources, then mail, files (and Teams) from them."""
        rng = self.rng
        signins = []
        if baseline is not None:
            # The first sign-ins of the period: one from every usual source, at one instant.
            for ip in u.sources:
                signins.append((baseline, ip))
            for _ in range(rng.randint(0, 1)):
                t = self.rand_between(baseline + timedelta(minutes=30), hi)
                signins.append((t, self.pick_source(u, t)))
        else:
            for _ in range(rng.randint(1, 3)):
                t = self.rand_between(lo, hi)
                signins.append((t, self.pick_source(u, t)))
        signins.sort()
        for t, ip in signins:
            self.ual_signin(u, t, ip, ua=self.ua_for(u, ip))
        first = signins[0][0]

        def source_at(t):
            ip = signins[0][1]
            for ts, sip in signins:
                if ts <= t:
                    ip = sip
            return ip

        def when():
            t = self.rand_between(first + timedelta(minutes=1), end)
            return t, source_at(t)

        for _ in range(rng.randint(1, 2)):
            t, ip = when()
            self.ual_mail_items_accessed(u, t, ip, ua=self.ua_for(u, ip))
        for _ in range(rng.randint(0, 2)):
            t, ip = when()
            self.ual_file_accessed(u, t, ip, ua=self.ua_for(u, ip))
        for _ in range(rng.randint(0, sends_max)):
            t, ip = when()
            self.ual_send(u, t, ip, rng.choice(MAIL_SUBJECTS), ua=self.ua_for(u, ip))
        if rng.random() < 0.3:
            t, ip = when()
            self.ual_teams_session(u, t, ip)
        return signins

    # ---- the whole dataset
    def generate(self):
        rng = self.rng
        self.make_people()
        baselines = {}
        rule_users = set(u.name for u in rng.sample(
            [u for u in self.users if u.name not in ("user0042", "user0100")], 10))
        benign_rules = []

        for u in self.users:
            b = self.rand_between(at(1, 6, 30), at(1, 10, 0))
            baselines[u.name] = b
            self.ordinary_day(u, 1, None, at(1, 20, 0), at(1, 22, 30), baseline=b)
            for day in (2, 3, 4):
                sis = self.ordinary_day(u, day, at(day, 7, 0), at(day, 20, 0), at(day, 22, 30))
                if day == 3 and u.name in rule_users:
                    t = self.rand_between(sis[0][0] + timedelta(minutes=2), at(3, 22, 45))
                    ip = max((s for s in sis if s[0] <= t), key=lambda s: s[0])[1]
                    benign_rules.append(self.ual_inbox_rule(u, t, ip, "Newsletters", [
                        {"Name": "MoveToFolder", "Value": "Newsletters"},
                        {"Name": "SubjectOrBodyContainsWords", "Value": "newsletter;unsubscribe"},
                        {"Name": "MarkAsRead", "Value": "False"},
                        {"Name": "StopProcessingRules", "Value": "True"},
                    ]))

        # user0042: once, a source never used before (new IP and new ASN), then nothing odd.
        u42 = self.by_name["user0042"]
        self.expect["user0042_signin"] = self.ual_signin(
            u42, at(3, 12, 47, 5), NEW_IP_0042, ua=u42.mobile_ua)
        # user0100: one wrong password at home.
        u100 = self.by_name["user0100"]
        self.ual_signin(u100, at(2, 8, 14, 9), u100.home, ok=False)

        # Ordinary users in the Entra sign-in log.
        ordinary_entra = []
        for _ in range(N_ENTRA_ORDINARY):
            u = rng.choice(self.users)
            day = rng.randint(1, DAYS)
            if day == 1:
                t = self.rand_between(baselines[u.name] + timedelta(minutes=5), at(1, 22, 0))
            else:
                t = self.rand_between(at(day, 7, 0), at(day, 21, 0))
            ip = rng.choice(u.sources)
            app, res = rng.choice([(APP_OFFICEHOME, RES_EXCHANGE), (APP_OFFICEHOME, RES_SHAREPOINT),
                                   (APP_TEAMS, RES_TEAMS), (APP_OFFICE, RES_SHAREPOINT)])
            ordinary_entra.append(self.entra_signin(u, t, ip, app=app, resource=res))

        self.incident()
        return benign_rules

    def incident(self):
        rng = self.rng
        v = self.victims
        E = self.expect
        A1, A2, A3, A4 = "203.0.113.10", "198.51.100.20", "203.0.113.70", "198.51.100.21"

        # Before and around the compromise: their usual days, from their usual sources.
        for i, name in enumerate(VICTIMS):
            u = v[name]
            self.ordinary_day(u, 1, None, at(1, 18, 0), at(1, 18, 30),
                              baseline=at(1, 7, 40 + 3 * i, rng.randint(0, 59)))
            for day in (2, 3, 4):
                self.ordinary_day(u, day, at(day, 11, 0), at(day, 17, 0), at(day, 19, 0))

        # 2021-06-02: sign-ins from attacker infrastructure, then rules and forwarding.
        plan = [
            ("alice", A1, at(2, 9, 12, 33), UA_PYTHON, at(2, 9, 30, 12)),
            ("bob", A1, at(2, 9, 40, 7), UA_PYTHON, at(2, 10, 1, 40)),
            ("carol", A1, at(2, 10, 5, 51), UA_PYTHON, at(2, 10, 30, 5)),
            ("dave", A2, at(2, 13, 30, 19), UA_ODD, at(2, 14, 0, 27)),
            ("erin", A2, at(2, 14, 2, 44), UA_ODD, at(2, 14, 20, 16)),
        ]
        E["attacker_signin"] = {}
        E["rule"] = {}
        for name, ip, t_in, ua, t_rule in plan:
            u = v[name]
            E["attacker_signin"][name] = self.ual_signin(u, t_in, ip, ua=ua, app=APP_OFFICE)
            # a look through the mailbox before the rule
            for k in range(2):
                t = self.rand_between(t_in + timedelta(minutes=1), t_rule - timedelta(minutes=1))
                self.ual_mail_items_accessed(u, t, ip, ua=ua, count=rng.randint(8, 25))
            if name in ("alice", "bob", "carol"):
                E["rule"][name] = self.ual_inbox_rule(u, t_rule, ip, ".", [
                    {"Name": "MoveToFolder", "Value": "RSS Feeds"},
                    {"Name": "SubjectOrBodyContainsWords", "Value": "invoice;payment;wire"},
                    {"Name": "MarkAsRead", "Value": "True"},
                    {"Name": "StopProcessingRules", "Value": "True"},
                ])
            elif name == "dave":
                E["rule"][name] = self.ual_inbox_rule(u, t_rule, ip, "Backup", [
                    {"Name": "ForwardTo", "Value": "dave.backup@example.net"},
                    {"Name": "MarkAsRead", "Value": "False"},
                    {"Name": "StopProcessingRules", "Value": "False"},
                ])
            else:
                E["rule"][name] = self.ual_set_mailbox_forward(u, t_rule, ip,
                                                               "erin.archive@example.org")

        # 2021-06-03: the phishing burst from alice and carol.
        E["burst"] = {}
        for name, t_in, lo, hi, n in [("alice", at(3, 7, 58, 10), at(3, 8, 0), at(3, 8, 30), 60),
                                      ("carol", at(3, 8, 8, 30), at(3, 8, 10), at(3, 8, 40), 45)]:
            u = v[name]
            self.ual_signin(u, t_in, A1, ua=UA_PYTHON, app=APP_OFFICE)
            times = sorted(self.rand_between(lo, hi) for _ in range(n))
            E["burst"][name] = [self.ual_send(u, t, A1, BURST_SUBJECT, ua=UA_PYTHON)
                                for t in times]

        # 2021-06-03: bob in Teams from a second hosting provider.
        bob = v["bob"]
        E["bob_as64511_signin"] = self.ual_signin(bob, at(3, 15, 55, 2), A3, ua=UA_TEAMS,
                                                  app=APP_TEAMS, resource=RES_TEAMS)
        E["teams"] = self.ual_teams_session(bob, at(3, 16, 0, 0), A3)

        # 2021-06-04 (Entra only): erin's POP3 try, dave's spray, lockout, then legacy protocols.
        erin, dave = v["erin"], v["dave"]
        self.entra_signin(erin, at(4, 1, 30, 41), A4, client_app="POP3", error=50126,
                          app=RES_EXCHANGE, interactive=True)
        for k in range(5):
            self.entra_signin(dave, at(4, 2, k, rng.randint(0, 59)), A4, error=50126)
        E["lockout"] = self.entra_signin(dave, at(4, 2, 6, 0), A4, error=50053)
        apps = ["IMAP4"] * 6 + ["Authenticated SMTP"] * 4
        rng.shuffle(apps)
        times = sorted(self.rand_between(at(4, 2, 10), at(4, 3, 0)) for _ in apps)
        E["legacy"] = [self.entra_signin(dave, t, A4, client_app=app_used, error=50053,
                                         app=RES_EXCHANGE)
                       for t, app_used in zip(times, apps)]


# --------------------------------------------------------------------------- writing

def write_outputs(gen: Generator, out_dir: str):
    rng = gen.rng
    os.makedirs(out_dir, exist_ok=True)

    rows = sorted(gen.ual, key=lambda r: (r[0], r[1]))
    unique = []
    for t, _seq, type_name, audit in rows:
        creation = t.strftime("%Y-%m-%dT%H:%M:%S") + ".0000000Z"
        unique.append([audit["Id"], creation, type_name, audit["Operation"], audit["UserId"],
                       json.dumps(audit, separators=(",", ":"), ensure_ascii=False), "", ""])

    # Purview repeats some rows: 37 earlier rows again, each somewhere after its original.
    index_of = {r[0]: i for i, r in enumerate(unique)}
    chosen = [index_of[gen.expect["attacker_signin"]["alice"]],
              index_of[gen.expect["burst"]["carol"][9]]]
    pool = [i for i in range(len(unique)) if i not in chosen]
    chosen += rng.sample(pool, N_DUPLICATES - len(chosen))
    before = defaultdict(list)     # unique row index -> duplicates written just before it
    for i in chosen:
        before[rng.randint(i + 1, len(unique))].append(i)
    with open(os.path.join(out_dir, "ual.csv"), "w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
        w.writerow(UAL_HEADER)
        for p in range(len(unique) + 1):
            for i in before.get(p, []):
                w.writerow(unique[i])
            if p < len(unique):
                w.writerow(unique[p])

    # Graph lists sign-ins newest first.
    entra = [s for _t, _seq, s in sorted(gen.entra, key=lambda r: (r[0], r[1]), reverse=True)]
    with open(os.path.join(out_dir, "entra-signins.json"), "w", encoding="utf-8",
              newline="\n") as f:
        f.write(json.dumps({"value": entra}, indent=2, ensure_ascii=False) + "\n")

    with open(os.path.join(out_dir, "geoip.mmdb"), "wb") as f:
        f.write(build_mmdb(mmdb_networks(), record_size=24,
                           build_epoch=int(datetime(2021, 6, 5, tzinfo=timezone.utc).timestamp())))


# --------------------------------------------------------------------------- truth, from the files

def load_events(out_dir: str):
    ual_rows = 0
    records = {}
    with open(os.path.join(out_dir, "ual.csv"), encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        if header != UAL_HEADER:
            raise SystemExit(f"ual.csv header is {header}")
        for row in reader:
            ual_rows += 1
            rid, audit_text = row[0], row[5]
            if rid in records:
                if records[rid][0] != audit_text:
                    raise SystemExit(f"record {rid} repeated with other content")
                continue
            audit = json.loads(audit_text)
            if audit["Id"] != rid:
                raise SystemExit(f"RecordId {rid} is not AuditData.Id")
            records[rid] = (audit_text, audit)
    with open(os.path.join(out_dir, "entra-signins.json"), encoding="utf-8") as f:
        entra = json.load(f)["value"]

    events = []
    for rid, (_text, a) in records.items():
        op = a["Operation"]
        e = {
            "src": "ual", "id": rid, "t": parse_time(a["CreationTime"]),
            "account": a["UserId"].lower(), "op": op,
            "ip": strip_port(a.get("ClientIP") or a.get("ClientIPAddress") or ""),
            "signin": op in ("UserLoggedIn", "UserLoginFailed"), "ok": False,
            "error": 0, "logon_error": a.get("LogonError"), "client_app": None,
            "params": {p["Name"]: p["Value"] for p in a.get("Parameters", [])},
        }
        if e["signin"]:
            e["ok"] = a.get("ResultStatus") == "Success"
            e["error"] = int(a.get("ErrorNumber") or 0)
        events.append(e)
    for s in entra:
        err = s["status"]["errorCode"]
        events.append({
            "src": "entra", "id": s["id"], "t": parse_time(s["createdDateTime"]),
            "account": s["userPrincipalName"].lower(), "op": "SignIn", "ip": s["ipAddress"],
            "signin": True, "ok": err == 0, "error": err, "logon_error": None,
            "client_app": s.get("clientAppUsed"), "params": {},
        })
    for e in events:
        e["asn"] = asn_of(e["ip"]) if e["ip"] else None
    events.sort(key=lambda e: (e["t"], e["id"]))
    return ual_rows, len(records), len(entra), events


def derive_findings(events):
    day = timedelta(hours=24)
    by_account = defaultdict(list)
    for e in events:
        by_account[e["account"]].append(e)

    # New sources. History = successful sign-ins strictly earlier in time.
    new_ip, new_asn = [], []           # events: first successful sign-in from a new IP / ASN
    for account in sorted(by_account):
        ok = [e for e in by_account[account] if e["signin"] and e["ok"]]
        seen_ip, seen_asn, has_history = set(), set(), False
        i = 0
        while i < len(ok):
            j = i
            while j < len(ok) and ok[j]["t"] == ok[i]["t"]:
                j += 1
            group = ok[i:j]
            marked_ip, marked_asn = set(), set()
            for e in group:
                if has_history and e["ip"] not in seen_ip and e["ip"] not in marked_ip:
                    marked_ip.add(e["ip"])
                    new_ip.append(e)
                if (has_history and e["asn"] is not None and e["asn"] not in seen_asn
                        and e["asn"] not in marked_asn):
                    marked_asn.add(e["asn"])
                    new_asn.append(e)
            for e in group:
                seen_ip.add(e["ip"])
                if e["asn"] is not None:
                    seen_asn.add(e["asn"])
            has_history = True
            i = j

    def shared(new_events, key, label):
        per_source = defaultdict(list)
        for e in new_events:
            per_source[key(e)].append(e)
        out = []
        for source in sorted(per_source, key=label):
            evs = sorted(per_source[source], key=lambda e: e["t"])
            hit = set()
            for a in evs:
                near = [b for b in evs if abs(b["t"] - a["t"]) <= day]
                if len({b["account"] for b in near}) >= 2:
                    hit.update(b["id"] for b in near)
            if hit:
                chosen = [e for e in evs if e["id"] in hit]
                out.append({"source": label(source),
                            "accounts": sorted({e["account"] for e in chosen}),
                            "rows": sorted(e["id"] for e in chosen)})
        return sorted(out, key=lambda f: f["source"])

    findings = {
        "shared_source_ip": shared(new_ip, lambda e: e["ip"], str),
        "shared_source_asn": shared(new_asn, lambda e: e["asn"], lambda a: f"AS{a}"),
    }

    def is_rule(e):
        if e["op"] in RULE_OPS:
            return True
        return e["op"] == "Set-Mailbox" and any(e["params"].get(k) for k in FORWARDING_PARAMS)

    rule_findings, bursts, teams = [], [], []
    for s in new_asn:
        mine = by_account[s["account"]]
        rules = [e for e in mine if is_rule(e) and s["t"] <= e["t"] <= s["t"] + day]
        if rules:
            rule_findings.append({"account": s["account"], "signin": s["id"],
                                  "rule": rules[0]["id"]})
        sends = [e for e in mine if e["op"] == "Send" and s["t"] <= e["t"] <= s["t"] + 2 * day]
        in_burst = set()
        for i, first in enumerate(sends):
            window = [e for e in sends[i:] if e["t"] - first["t"] <= timedelta(minutes=60)]
            if len(window) >= 20:
                in_burst.update(e["id"] for e in window)
        if in_burst:
            bursts.append({"account": s["account"], "signin": s["id"],
                           "sends": sorted(in_burst)})
    new_asn_sources = defaultdict(list)
    for s in new_asn:
        new_asn_sources[s["account"]].append(s)
    for e in events:
        if e["op"] == "TeamsSessionStarted":
            if any(s["ip"] == e["ip"] and s["t"] <= e["t"] for s in new_asn_sources[e["account"]]):
                teams.append(e["id"])

    legacy = []
    for account in sorted(by_account):
        signins = [e for e in by_account[account] if e["signin"]]
        covered = set()
        for lock in signins:
            if lock["ok"] or lock["id"] in covered:
                continue
            if not (lock["error"] == 50053 or lock["logon_error"] == "IdsLocked"):
                continue
            attempts = [e for e in signins if e["client_app"] in LEGACY_CLIENT_APPS
                        and lock["t"] < e["t"] <= lock["t"] + day]
            if attempts:
                covered.update(e["id"] for e in attempts)
                legacy.append({"account": account, "lockout": lock["id"],
                               "attempts": sorted(e["id"] for e in attempts)})

    findings["new_asn_then_rule"] = sorted(rule_findings, key=lambda f: (f["account"], f["signin"]))
    findings["mail_burst"] = sorted(bursts, key=lambda f: (f["account"], f["signin"]))
    findings["legacy_after_lockout"] = sorted(legacy, key=lambda f: (f["account"], f["lockout"]))
    if len(teams) != 1:
        raise SystemExit(f"expected one Teams session from a new source, found {teams}")
    findings["teams_session"] = teams[0]
    return findings, new_ip, new_asn


def build_truth(out_dir: str):
    ual_rows, ual_unique, entra_rows, events = load_events(out_dir)
    per_hour = Counter(e["t"].strftime("%Y-%m-%dT%H:00:00Z") for e in events if e["src"] == "ual")

    def spans(evs, key):
        first, last = {}, {}
        for e in evs:
            k = key(e)
            first.setdefault(k, e["t"])
            last[k] = e["t"]
        return first, last

    pivot_ip = {}
    for ip in ATTACKER_IPS:
        first, last = spans([e for e in events if e["ip"] == ip], lambda e: e["account"])
        pivot_ip[ip] = [{"account": a, "first": iso_z(first[a]), "last": iso_z(last[a])}
                        for a in sorted(first)]
    pivot_asn = {}
    for asn in ATTACKER_ASNS:
        first, last = spans([e for e in events if e["asn"] == asn], lambda e: e["account"])
        pivot_asn[str(asn)] = [{"account": a, "first": iso_z(first[a]), "last": iso_z(last[a])}
                               for a in sorted(first)]
    victims = [f"{v}@{TENANT}" for v in VICTIMS]
    pivot_account = {}
    for upn in victims:
        first, last = spans([e for e in events if e["account"] == upn and e["ip"]],
                            lambda e: e["ip"])
        ips = sorted(first, key=lambda ip: ipaddress.ip_address(ip))
        pivot_account[upn] = [{"ip": ip, "first": iso_z(first[ip]), "last": iso_z(last[ip])}
                              for ip in ips]

    findings, new_ip, new_asn = derive_findings(events)
    truth = {
        "tenant": TENANT,
        "ual_rows": ual_rows,
        "ual_unique": ual_unique,
        "duplicates": ual_rows - ual_unique,
        "entra_rows": entra_rows,
        "ual_per_hour": dict(sorted(per_hour.items())),
        "attacker_ips": ATTACKER_IPS,
        "attacker_asns": ATTACKER_ASNS,
        "victims": victims,
        "pivot_ip": pivot_ip,
        "pivot_asn": pivot_asn,
        "pivot_account": pivot_account,
        "findings": findings,
    }
    return truth, new_ip, new_asn


def expected_findings(gen: Generator):
    E = gen.expect
    upn = {name: f"{name}@{TENANT}" for name in VICTIMS}
    sig = E["attacker_signin"]
    return {
        "shared_source_ip": [
            {"source": "198.51.100.20", "accounts": [upn["dave"], upn["erin"]],
             "rows": sorted([sig["dave"], sig["erin"]])},
            {"source": "203.0.113.10", "accounts": [upn["alice"], upn["bob"], upn["carol"]],
             "rows": sorted([sig["alice"], sig["bob"], sig["carol"]])},
        ],
        "shared_source_asn": [
            {"source": "AS64510", "accounts": [upn["alice"], upn["bob"], upn["carol"]],
             "rows": sorted([sig["alice"], sig["bob"], sig["carol"]])},
            {"source": "AS64512", "accounts": [upn["dave"], upn["erin"]],
             "rows": sorted([sig["dave"], sig["erin"]])},
        ],
        "new_asn_then_rule": [{"account": upn[n], "signin": sig[n], "rule": E["rule"][n]}
                              for n in VICTIMS],
        "mail_burst": [{"account": upn[n], "signin": sig[n], "sends": sorted(E["burst"][n])}
                       for n in ("alice", "carol")],
        "legacy_after_lockout": [{"account": upn["dave"], "lockout": E["lockout"],
                                  "attempts": sorted(E["legacy"])}],
        "teams_session": E["teams"],
    }


def check_against_story(gen: Generator, truth, new_ip, new_asn, benign_rules):
    problems = []
    want = expected_findings(gen)
    for key, value in want.items():
        got = truth["findings"][key]
        if got != value:
            problems.append(f"finding {key}:\n  derived  {json.dumps(got)}\n  expected {json.dumps(value)}")
    E = gen.expect
    if truth["duplicates"] != N_DUPLICATES:
        problems.append(f"{truth['duplicates']} duplicates, not {N_DUPLICATES}")
    # The new sources in the whole dataset are exactly the incident's and user0042's.
    ips = sorted((e["account"], e["ip"], e["id"]) for e in new_ip)
    want_ips = sorted(
        [(f"{n}@{TENANT}", ip, E["attacker_signin"][n]) for n, ip in
         [("alice", "203.0.113.10"), ("bob", "203.0.113.10"), ("carol", "203.0.113.10"),
          ("dave", "198.51.100.20"), ("erin", "198.51.100.20")]]
        + [(f"bob@{TENANT}", "203.0.113.70", E["bob_as64511_signin"]),
           (f"user0042@{TENANT}", NEW_IP_0042, E["user0042_signin"])])
    if ips != want_ips:
        problems.append(f"new-IP sign-ins are {ips}")
    asns = sorted((e["account"], e["asn"]) for e in new_asn)
    want_asns = sorted([(f"{n}@{TENANT}", 64510) for n in ("alice", "bob", "carol")]
                       + [(f"{n}@{TENANT}", 64512) for n in ("dave", "erin")]
                       + [(f"bob@{TENANT}", 64511), (f"user0042@{TENANT}", 64502)])
    if asns != want_asns:
        problems.append(f"new-ASN sign-ins are {asns}")
    if len(benign_rules) != 10:
        problems.append(f"{len(benign_rules)} benign rules")
    if problems:
        raise SystemExit("derived truth does not match the incident:\n" + "\n".join(problems))


# --------------------------------------------------------------------------- --check

def check_mmdb(path: str):
    try:
        import maxminddb  # only for --check
    except ImportError:
        raise SystemExit("--check needs the maxminddb package (pip install maxminddb "
                         "in a virtual environment)")
    raw = open(path, "rb").read()
    # The ASN is stored as uint32 (type 6), as in GeoLite2-ASN: control byte 0xC2, 2 bytes.
    for asn in (64500, 64501, 64502, 64510, 64511, 64512):
        if bytes([0xC2]) + asn.to_bytes(2, "big") not in raw:
            raise SystemExit(f"AS{asn} is not stored as a uint32")

    def rec(asn, org, cc):
        return {"autonomous_system_number": asn, "autonomous_system_organization": org,
                "country": {"iso_code": cc}}

    c, b, m, h1, v2, p3 = (rec(64500, "Contoso Ltd", "GB"), rec(64501, "Example Broadband", "GB"),
                           rec(64502, "Example Mobile", "GB"), rec(64510, "Hosting One", "NL"),
                           rec(64511, "VPS Two", "US"), rec(64512, "Proxy Three", "SG"))
    cases = [
        ("192.0.2.7", c, 24), ("192.0.2.0", c, 24), ("192.0.2.255", c, 24),
        ("192.0.1.255", None, None), ("192.0.3.0", None, None),
        ("100.64.17.3", b, 16), ("100.64.0.0", b, 16), ("100.64.255.255", b, 16),
        ("100.63.255.255", None, None), ("100.65.0.0", None, None),
        ("198.18.250.1", m, 16), ("198.18.0.0", m, 16), ("198.18.255.255", m, 16),
        ("198.17.255.255", None, None), ("198.19.0.0", None, None),
        ("203.0.113.10", h1, 26), ("203.0.113.0", h1, 26), ("203.0.113.63", h1, 26),
        ("203.0.112.255", None, None),
        ("203.0.113.70", v2, 26), ("203.0.113.64", v2, 26), ("203.0.113.127", v2, 26),
        ("203.0.113.128", None, None),
        ("198.51.100.20", p3, 26), ("198.51.100.21", p3, 26), ("198.51.100.0", p3, 26),
        ("198.51.100.63", p3, 26), ("198.51.99.255", None, None), ("198.51.100.64", None, None),
        ("8.8.8.8", None, None), ("0.0.0.0", None, None), ("255.255.255.255", None, None),
        ("2001:db8::1", None, None), ("::1", None, None),
    ]
    modes = [("pure Python, in memory", maxminddb.MODE_MEMORY),
             ("pure Python, mmap", maxminddb.MODE_MMAP)]
    try:
        import maxminddb.extension  # noqa: F401
        modes.append(("C extension", maxminddb.MODE_MMAP_EXT))
    except ImportError:
        pass
    for label, mode in modes:
        reader = maxminddb.open_database(path, mode)
        md = reader.metadata()
        assert md.database_type == "custody-example-asn-country", md.database_type
        assert md.ip_version == 6 and md.record_size == 24, (md.ip_version, md.record_size)
        assert md.binary_format_major_version == 2 and md.binary_format_minor_version == 0
        assert md.languages == [] and "en" in md.description
        for ip, want, plen in cases:
            got = reader.get(ip)
            if got != want:
                raise SystemExit(f"{label}: {ip} -> {got}, expected {want}")
            if want is not None:
                _rec, prefix_len = reader.get_with_prefix_len(ip)
                if prefix_len != plen:
                    raise SystemExit(f"{label}: {ip} prefix /{prefix_len}, expected /{plen}")
        reader.close()
        print(f"check: geoip.mmdb read by maxminddb {maxminddb.__version__} ({label}): "
              f"{len(cases)} look-ups as expected, node_count {md.node_count}")


# --------------------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(description="Write the synthetic Microsoft 365 incident dataset.")
    ap.add_argument("out_dir", help="directory to write (created if missing)")
    ap.add_argument("--check", action="store_true",
                    help="also verify geoip.mmdb with the maxminddb reader (must be installed)")
    args = ap.parse_args(argv)

    gen = Generator()
    benign_rules = gen.generate()
    write_outputs(gen, args.out_dir)
    truth, new_ip, new_asn = build_truth(args.out_dir)
    check_against_story(gen, truth, new_ip, new_asn, benign_rules)
    with open(os.path.join(args.out_dir, "truth.json"), "w", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps(truth, indent=2) + "\n")
    print(f"wrote {args.out_dir}: ual.csv {truth['ual_rows']} rows ({truth['ual_unique']} unique), "
          f"entra-signins.json {truth['entra_rows']} sign-ins, geoip.mmdb, truth.json")
    if args.check:
        check_mmdb(os.path.join(args.out_dir, "geoip.mmdb"))


if __name__ == "__main__":
    main()
