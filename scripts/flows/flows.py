#!/usr/bin/env python3
"""Contact-centre call flows for SIPp: scenarios, RTP segments and facts (stdlib only).

Each flow is written once here as a timeline (milliseconds from the start of the run); every
SIPp process ("leg": one party's side of one dialog, or one party's UAS socket) gets a
scenario whose pauses put each step at its planned time. Parties sit on one loopback, each on
its own address; a party with two dialogs at once (C during a transfer, A1 consulting) has a
second SIPp process on another SIP port of the same address, since one SIPp process follows
one Call-ID. Call-IDs, tags and branches are literal, so REFER / Replaces values agree across
processes. RTP: every stream segment is its own pcap (20 ms PCMA packets of noise, RTP
timestamps continuing across a stream's segments, as a phone's clock would), played with
play_pcap_audio from the leg's media port.

build FLOW DIR    writes DIR/<leg>.xml, DIR/<leg>-<n>.pcap, DIR/legs (one line a leg:
                  name ip sip_port media_port calls remote|- call_id|-) and DIR/facts
export DIR        writes every flow's scenarios to DIR/<flow>/ (media paths as @MEDIA@), to read
list              the flow names
"""
import os
import random
import struct
import sys

C_IP, C_USER = "192.0.2.10", "+15550001"
AGENTS = {1: "192.0.2.21", 2: "192.0.2.22", 3: "192.0.2.23", 4: "192.0.2.24"}
FOCUS_IP, FOCUS_USER = "192.0.2.40", "conf1"
PT, CODEC = 8, "PCMA"
SSRC = 0x5EEDCA11


def dn(k):
    return f"200{k}"


class Dialog:
    """One SIP dialog: caller and callee URIs, tags, contacts, CSeq per side."""

    def __init__(self, cid, caller, caller_ip, caller_port, ctag, callee, callee_ip, etag, callee_port=5060):
        self.cid, self.ctag, self.etag = cid, ctag, etag
        self.caller = f"<sip:{caller}@{caller_ip}>"
        self.callee_uri = f"sip:{callee}@{callee_ip}:{callee_port}"
        self.callee = f"<sip:{callee}@{callee_ip}>"
        self.ccontact = f"sip:{caller}@{caller_ip}:{caller_port}"
        self.econtact = self.callee_uri
        self.cseq = {"caller": 1, "callee": 100}
        self.sdp_version = {"caller": 1, "callee": 1}

    def headers(self, side, method, cseq=None, with_etag=True):
        """Start line + dialog headers of a request sent by `side`"""
        if cseq is None:
            self.cseq[side] += 1
            cseq = self.cseq[side]
        if side == "caller":
            ruri, frm, to = self.econtact, f"{self.caller};tag={self.ctag}", self.callee + (f";tag={self.etag}" if with_etag else "")
        else:
            ruri, frm, to = self.ccontact, f"{self.callee};tag={self.etag}", f"{self.caller};tag={self.ctag}"
        return [f"{method} {ruri} SIP/2.0", f"From: {frm}", f"To: {to}", f"Call-ID: {self.cid}",
                f"CSeq: {cseq} {method}", "Max-Forwards: 70"]


def sdp(user, version, mode, conn="[media_ip]"):
    """An SDP body; mode "c0" is RFC 2543 hold: connection address 0.0.0.0, no direction"""
    if mode == "c0":
        conn, mode = "0.0.0.0", None
    return [
        "v=0", f"o={user.lstrip('+')} 5365 {version} IN IP4 [local_ip]", "s=-", f"c=IN IP4 {conn}", "t=0 0",
        f"m=audio [auto_media_port] RTP/AVP {PT}", f"a=rtpmap:{PT} {CODEC}/8000", "a=ptime:20",
    ] + ([f"a={mode}"] if mode else [])


class Leg:
    """One SIPp process: its scenario steps at planned times, and its RTP segments."""

    def __init__(self, flow, name, ip, port, mp, user, remote=None, calls=1, cid=None):
        self.flow, self.name, self.ip, self.port, self.mp, self.user = flow, name, ip, port, mp, user
        self.remote, self.calls, self.cid = remote, calls, cid
        self.steps, self.t, self.segments, self.nbranch = [], 0, [], 0
        self.segments_of = [self]  # legs whose RTP segments this process plays
        if flow is not None:
            flow.legs.append(self)

    def branch(self):
        self.nbranch += 1
        return f"z9hG4bK-{self.flow.name}-{self.name}-{self.nbranch}"

    def at(self, t):
        """The next step happens at planned time t (ms)"""
        if t < self.t:
            raise SystemExit(f"{self.flow.name}/{self.name}: step at {t} ms before {self.t} ms")
        if t > self.t:
            self.steps.append(f'  <pause milliseconds="{t - self.t}"/>')
        self.t = t
        return self

    def sync(self, t):
        """A receive: the step happens when the other party sends, at its planned time t (no
        pause, since SIPp waits for the message)"""
        if t < self.t:
            raise SystemExit(f"{self.flow.name}/{self.name}: receive at {t} ms before {self.t} ms")
        self.t = t
        return self

    def send(self, lines, body=None, retrans=True):
        via = f"Via: SIP/2.0/UDP [local_ip]:[local_port];branch={self.branch()}"
        if lines[0].startswith("SIP/2.0"):
            via = "[last_Via:]"
        head = [lines[0], via] + lines[1:]
        if body is not None:
            text = "\n".join(head + [f"Content-Length: [len]", ""] + body)
        else:
            text = "\n".join(head + ["Content-Length: 0"])
        # requests wait for their response; ACKs and responses are not retransmitted by SIPp
        r = ' retrans="500"' if retrans and not lines[0].startswith(("SIP/2.0", "ACK ")) else ""
        self.steps.append(f"  <send{r}>\n    <![CDATA[\n\n{text}\n\n    ]]>\n  </send>")

    def request(self, d, side, method, extra=(), body=None, ctype=None, cseq=None, with_etag=True):
        lines = d.headers(side, method, cseq, with_etag)
        contact = d.ccontact if side == "caller" else d.econtact
        lines.append(f"Contact: <{contact}>")
        lines += list(extra)
        if body is not None:
            lines.append(f"Content-Type: {ctype}")
        self.send(lines, body)

    def invite(self, d, extra=(), cseq=1):
        """Initial INVITE of dialog d, sent by its caller"""
        self.request(d, "caller", "INVITE", extra, sdp(self.user, 1, "sendrecv"), "application/sdp", cseq=cseq, with_etag=False)
        self.recv("100", optional=True)
        self.recv("180", optional=True)
        self.recv("200")
        self.send(d.headers("caller", "ACK", cseq=cseq))

    def reinvite(self, d, side, mode, method="INVITE"):
        """re-INVITE (or UPDATE) in d from `side` with SDP direction `mode`; a re-INVITE's 200
        is ACKed"""
        d.sdp_version[side] += 1
        cseq = d.cseq[side] + 1
        self.request(d, side, method, (), sdp(self.user, d.sdp_version[side], mode), "application/sdp")
        self.recv("200")
        if method == "INVITE":
            self.send(d.headers(side, "ACK", cseq=cseq))

    def recv(self, what, optional=False, crlf=False):
        kind = "response" if what[0].isdigit() else "request"
        o = ' optional="true"' if optional else ""
        self.steps.append(f'  <recv {kind}="{what}"{o}/>')

    def respond(self, code, reason, tag="", contact=None, body=None, ctype="application/sdp", extra=()):
        lines = [f"SIP/2.0 {code} {reason}", "[last_From:]", f"[last_To:]{tag}", "[last_Call-ID:]", "[last_CSeq:]",
                 f"Contact: {contact or f'<sip:{self.user}@[local_ip]:[local_port]>'}"] + list(extra)
        if body is not None:
            lines.append(f"Content-Type: {ctype}")
        self.send(lines, body)

    def answer(self, d, mode="sendrecv", isfocus=False):
        """Receive d's INVITE (initial when d.etag not yet given) and answer with SDP"""
        self.recv("INVITE")
        contact = f"<sip:{self.user}@[local_ip]:[local_port]>" + (";isfocus" if isfocus else "")
        self.respond(200, "OK", f";tag={d.etag}", contact, body=sdp(self.user, 1, mode))
        self.recv("ACK")

    def answer_reinvite(self, d, side, mode, method="INVITE"):
        self.recv(method)
        d.sdp_version[side] += 1
        self.respond(200, "OK", body=sdp(self.user, d.sdp_version[side], mode))
        if method == "INVITE":
            self.recv("ACK")

    def ok(self, what, code=200, reason="OK"):
        """Receive request `what` and answer it (200 OK)"""
        self.recv(what)
        self.respond(code, reason)

    def rtp(self, start, end, first=None):
        """Plays this leg's stream from planned time `start` (the step's time) to `end`; `first`
        is when the stream's first segment began (timestamps continue from it)"""
        self.at(start)
        first = start if first is None else first
        n = len(self.segments)
        # the sequence number counts packets sent; the timestamp follows the clock, so it
        # jumps over a hold as a phone's does
        seq0 = sum(dur // 20 for dur, _, _ in self.segments)
        self.segments.append((end - start, (start - first) * 8, seq0))
        self.steps.append(f'  <nop>\n    <action>\n      <exec play_pcap_audio="@MEDIA@/{self.name}-{n}.pcap"/>\n    '
                          f'</action>\n  </nop>')

    def raw(self, xml):
        self.steps.append(xml)

    def branches(self, cases):
        """This UAS leg serves several dialogs, one SIPp call each: `cases` is a list of
        (regexp on the INVITE, planned leg); the last one is the default. Each planned leg starts
        with its answer(); the INVITE is received once here and the call jumps to its case."""
        self.steps.append('  <recv request="INVITE">\n    <action>\n' + "".join(
            f'      <ereg regexp="{rx}" search_in="msg" check_it="false" assign_to="case{k}"/>\n'
            for k, (rx, _) in enumerate(cases[:-1])) + '    </action>\n  </recv>')
        for k in range(len(cases) - 1):
            self.steps.append(f'  <nop test="case{k}" next="case{k}"/>')
        for k, (_, leg) in enumerate(reversed(cases)):
            k = len(cases) - 1 - k
            if k != len(cases) - 1:
                self.steps.append(f'  <label id="case{k}"/>')
            assert leg.steps[0] == '  <recv request="INVITE"/>', leg.steps[0]
            self.steps += leg.steps[1:]
            self.segments_of.append(leg)
            if k:
                self.steps.append('  <nop next="end"/>')
        self.steps.append('  <label id="end"/>')

    def xml(self):
        return (f'<?xml version="1.0" encoding="ISO-8859-1" ?>\n<!DOCTYPE scenario SYSTEM "sipp.dtd">\n'
                f'<!-- callrec flow "{self.flow.name}", leg {self.name}: {self.user} at {self.ip}:{self.port}.\n'
                f'     Generated by scripts/flows/flows.py (edit there); times are planned ms from the run\'s start. -->\n'
                f'<scenario name="{self.flow.name} {self.name}">\n' + "\n".join(self.steps) +
                '\n  <timewait milliseconds="500"/>\n</scenario>\n')


class Flow:
    def __init__(self, name, about):
        self.name, self.about, self.legs, self.facts = name, about, [], []
        self.mp = 30000

    def leg(self, name, ip, user, port=5060, remote=None, calls=1, cid=None):
        self.mp += 100
        return Leg(self, name, ip, port, self.mp, user, remote, calls, cid)

    def plan(self, name, user):
        """A leg planned on its own and merged into a process with Leg.branches"""
        p = Leg(None, name, "", 0, 0, user)
        p.flow = self
        return p

    def fact(self, *words):
        self.facts.append(" ".join(str(w) for w in words))


def cust_leg(f, name, d, port, remote_ip):
    return f.leg(name, C_IP, C_USER, port, f"{remote_ip}:5060", cid=d.cid)


def refer(leg, d, side, target):
    """REFER in d from `side` with Refer-To target and Referred-By the sender; 202 back"""
    who = d.callee if side == "callee" else d.caller
    leg.request(d, side, "REFER", (f"Refer-To: <{target}>", f"Referred-By: {who}"))
    leg.recv("202")


def notify(leg, d, frag, state):
    """NOTIFY (Event: refer) from the transferee, the caller of d"""
    leg.request(d, "caller", "NOTIFY", ("Event: refer", f"Subscription-State: {state}"), [frag], "message/sipfrag;version=2.0")
    leg.recv("200")


def hold(name="hold", tag="hold", offer="sendonly", answer="recvonly", method="INVITE"):
    about = {"sendonly": "sendonly", "inactive": "a=inactive", "c0": "c=0.0.0.0"}[offer]
    f = Flow(name, f"C calls 2001; A1 holds C 3 s ({method} {about}, no RTP), resumes; C hangs up")
    d1 = Dialog(f"{tag}-d1@192.0.2.10", C_USER, C_IP, 5060, f"c-{tag}-d1", dn(1), AGENTS[1], f"a1-{tag}-d1")
    c = cust_leg(f, "c-d1", d1, 5060, AGENTS[1])
    a1 = f.leg("a1-d1", AGENTS[1], dn(1))
    c.at(1000).invite(d1)
    a1.answer(d1)
    a1.sync(1000)
    c.rtp(1000, 4000)
    a1.rtp(1000, 4000)
    a1.at(4000).reinvite(d1, "callee", offer, method)
    c.sync(4000).answer_reinvite(d1, "caller", answer, method)
    a1.at(7000).reinvite(d1, "callee", "sendrecv", method)
    c.sync(7000).answer_reinvite(d1, "caller", "sendrecv", method)
    c.rtp(7000, 10000, first=1000)
    a1.rtp(7000, 10000, first=1000)
    c.at(10000).request(d1, "caller", "BYE")
    c.recv("200")
    a1.sync(10000).ok("BYE")
    f.fact("call", "D1", d1.cid, "from-tag", d1.ctag, "to-tag", d1.etag, "agent", dn(1), "answered", 1000)
    f.fact("hold", "D1", method, 4000)
    f.fact("resume", "D1", method, 7000)
    f.fact("bye", "D1", "by", "C", 10000)
    return f


def chain(f, name, targets, talk_first=3000, talk=2000, final_talk=3000):
    """C calls targets[0]; each agent blind-transfers C to the next; C hangs up at the end.
    Returns the dialogs."""
    ds, cl, al = [], [], []
    t = 1000
    for k, a in enumerate(targets):
        d = Dialog(f"{name}-d{k + 1}@192.0.2.10", C_USER, C_IP, 5060 + 2 * k, f"c-{name}-d{k + 1}",
                   dn(a), AGENTS[a], f"a{a}-{name}-d{k + 1}")
        ds.append(d)
        cl.append(cust_leg(f, f"c-d{k + 1}", d, 5060 + 2 * k, AGENTS[a]))
        al.append(f.leg(f"a{a}-d{k + 1}", AGENTS[a], dn(a)))
    answered = 1000
    for k, d in enumerate(ds):
        c, a = cl[k], al[k]
        extra = () if k == 0 else (f"Referred-By: <sip:{dn(targets[k - 1])}@{AGENTS[targets[k - 1]]}>",)
        c.at(answered).invite(d, extra)
        a.answer(d)
        a.sync(answered)
        f.fact("call", f"D{k + 1}", d.cid, "from-tag", d.ctag, "to-tag", d.etag, "agent", dn(targets[k]),
               "answered", answered)
        if k == len(ds) - 1:
            end = answered + final_talk if k else answered + talk_first
            if k:
                end = max(end, prev_bye + final_talk)
            c.rtp(answered, end)
            a.rtp(answered, end)
            c.at(end).request(d, "caller", "BYE")
            c.recv("200")
            a.sync(end).ok("BYE")
            f.fact("bye", f"D{k + 1}", "by", "C", end)
            break
        start_talk = answered if k == 0 else prev_bye
        t_refer = start_talk + (talk_first if k == 0 else talk)
        nxt = ds[k + 1]
        target = f"sip:{dn(targets[k + 1])}@{AGENTS[targets[k + 1]]}:5060"
        bye = t_refer + 1200
        c.rtp(answered, t_refer)
        a.rtp(answered, bye)
        a.at(t_refer)
        refer(a, d, "callee", target)
        c.sync(t_refer).ok("REFER", 202, "Accepted")
        c.at(t_refer + 50)
        notify(c, d, "SIP/2.0 100 Trying", "active;expires=60")
        a.sync(t_refer + 50).ok("NOTIFY")
        c.at(t_refer + 800)
        notify(c, d, "SIP/2.0 200 OK", "terminated;reason=noresource")
        a.sync(t_refer + 800).ok("NOTIFY")
        a.at(bye).request(d, "callee", "BYE")
        a.recv("200")
        c.sync(bye).ok("BYE")
        f.fact("refer", f"D{k + 1}", "to", dn(targets[k + 1]), t_refer)
        f.fact("bye", f"D{k + 1}", "by", dn(targets[k]), bye)
        answered = t_refer + 400
        prev_bye = bye
    return ds


def blind():
    f = Flow("blind", "C calls 2001; A1 blind-transfers C to 2002 (REFER, NOTIFY sipfrag); C hangs up")
    chain(f, "blind", [1, 2])
    return f


def blind3():
    f = Flow("blind3", "C calls 2001; transferred blind 2001 -> 2002 -> 2003 -> 2004; C hangs up")
    chain(f, "blind3", [1, 2, 3, 4])
    return f


def attended():
    f = Flow("attended", "C calls 2001; A1 holds C, consults 2002, transfers C with REFER/Replaces; C hangs up")
    d1 = Dialog("att-d1@192.0.2.10", C_USER, C_IP, 5060, "c-att-d1", dn(1), AGENTS[1], "a1-att-d1")
    d2 = Dialog("att-d2@192.0.2.21", dn(1), AGENTS[1], 5062, "a1-att-d2", dn(2), AGENTS[2], "a2-att-d2")
    d3 = Dialog("att-d3@192.0.2.10", C_USER, C_IP, 5062, "c-att-d3", dn(2), AGENTS[2], "a2-att-d3")
    c1 = cust_leg(f, "c-d1", d1, 5060, AGENTS[1])
    a1 = f.leg("a1-d1", AGENTS[1], dn(1))
    a1c = f.leg("a1-d2", AGENTS[1], dn(1), 5062, f"{AGENTS[2]}:5060", cid=d2.cid)
    c3 = cust_leg(f, "c-d3", d3, 5062, AGENTS[2])
    a2 = f.leg("a2", AGENTS[2], dn(2), calls=2)
    a2d2, a2d3 = f.plan("a2-d2", dn(2)), f.plan("a2-d3", dn(2))
    c1.at(1000).invite(d1)
    a1.answer(d1)
    a1.sync(1000)
    c1.rtp(1000, 4000)
    a1.rtp(1000, 4000)
    a1.at(4000).reinvite(d1, "callee", "sendonly")
    c1.sync(4000).answer_reinvite(d1, "caller", "recvonly")
    a1c.at(4400).invite(d2)
    a2d2.answer(d2)
    a2d2.sync(4400)
    a1c.rtp(4400, 7200)
    a2d2.rtp(4400, 7200)
    replaces = f"{d2.cid};to-tag={d2.etag};from-tag={d2.ctag}"
    esc = replaces.replace("@", "%40").replace(";", "%3B").replace("=", "%3D")
    a1.at(6400)
    refer(a1, d1, "callee", f"sip:{dn(2)}@{AGENTS[2]}:5060?Replaces={esc}")
    c1.sync(6400).ok("REFER", 202, "Accepted")
    c1.at(6450)
    notify(c1, d1, "SIP/2.0 100 Trying", "active;expires=60")
    a1.sync(6450).ok("NOTIFY")
    c3.at(6800).invite(d3, (f"Replaces: {replaces}", f"Referred-By: <sip:{dn(1)}@{AGENTS[1]}>"))
    a2d3.answer(d3)
    a2d3.sync(6800)
    c3.rtp(6800, 10600)
    a2d3.rtp(6800, 10600)
    a2d2.at(7200).request(d2, "callee", "BYE")
    a2d2.recv("200")
    a1c.sync(7200).ok("BYE")
    c1.at(7200)
    notify(c1, d1, "SIP/2.0 200 OK", "terminated;reason=noresource")
    a1.sync(7200).ok("NOTIFY")
    a1.at(7600).request(d1, "callee", "BYE")
    a1.recv("200")
    c1.sync(7600).ok("BYE")
    c3.at(10600).request(d3, "caller", "BYE")
    c3.recv("200")
    a2d3.sync(10600).ok("BYE")
    a2.branches([("Replaces:", a2d3), ("", a2d2)])
    f.fact("call", "D1", d1.cid, "from-tag", d1.ctag, "to-tag", d1.etag, "agent", dn(1), "answered", 1000)
    f.fact("hold", "D1", 4000)
    f.fact("call", "D2", d2.cid, "from-tag", d2.ctag, "to-tag", d2.etag, "consultation", dn(1), dn(2), "answered", 4400)
    f.fact("refer", "D1", "to", dn(2), "replaces", "D2", 6400)
    f.fact("call", "D3", d3.cid, "from-tag", d3.ctag, "to-tag", d3.etag, "agent", dn(2), "answered", 6800)
    f.fact("bye", "D2", "by", dn(2), 7200)
    f.fact("bye", "D1", "by", dn(1), 7600)
    f.fact("bye", "D3", "by", "C", 10600)
    return f


def redirect():
    f = Flow("redirect", "C calls 2001, which answers 302 to 2002; C calls 2002 in the same Call-ID; C hangs up")
    cid = "redir-d1@192.0.2.10"
    d = Dialog(cid, C_USER, C_IP, 5060, "c-redir-d1", dn(1), AGENTS[1], "a1-redir-d1")
    c = cust_leg(f, "c-d1", d, 5060, AGENTS[1])
    a1 = f.leg("a1", AGENTS[1], dn(1))
    a2 = f.leg("a2", AGENTS[2], dn(2))
    c.at(1000)
    b = c.branch()
    inv = [f"INVITE {d.callee_uri} SIP/2.0", f"Via: SIP/2.0/UDP [local_ip]:[local_port];branch={b}",
           f"From: {d.caller};tag={d.ctag}", f"To: {d.callee}", f"Call-ID: {cid}", "CSeq: 1 INVITE",
           f"Contact: <{d.ccontact}>", "Max-Forwards: 70", "Content-Type: application/sdp", "Content-Length: [len]", ""]
    c.steps.append('  <send retrans="500">\n    <![CDATA[\n\n' + "\n".join(inv + sdp(C_USER, 1, "sendrecv")) + '\n\n    ]]>\n  </send>')
    c.recv("100", optional=True)
    c.recv("302")
    ack = [f"ACK {d.callee_uri} SIP/2.0", f"Via: SIP/2.0/UDP [local_ip]:[local_port];branch={b}",
           f"From: {d.caller};tag={d.ctag}", f"To: {d.callee};tag={d.etag}", f"Call-ID: {cid}", "CSeq: 1 ACK",
           "Max-Forwards: 70", "Content-Length: 0"]
    c.steps.append('  <send>\n    <![CDATA[\n\n' + "\n".join(ack) + '\n\n    ]]>\n  </send>')
    a1.recv("INVITE")
    a1.respond(302, "Moved Temporarily", f";tag={d.etag}", f"<sip:{dn(2)}@{AGENTS[2]}:5060>")
    a1.recv("ACK")
    # the new target: same Call-ID, From and To (RFC 3261 8.1.3.4 keeps them), CSeq 2
    c.raw(f'  <nop>\n    <action>\n      <setdest host="{AGENTS[2]}" port="5060" protocol="udp"/>\n    </action>\n  </nop>')
    d2 = Dialog(cid, C_USER, C_IP, 5060, d.ctag, dn(2), AGENTS[2], "a2-redir-d1")
    d2.callee = d.callee
    d2.cseq["caller"] = 2
    c.invite(d2, cseq=2)
    a2.answer(d2)
    a2.sync(1000)
    c.rtp(1000, 5000)
    a2.rtp(1000, 5000)
    c.at(5000).request(d2, "caller", "BYE")
    c.recv("200")
    a2.sync(5000).ok("BYE")
    f.fact("call", "D1", cid, "from-tag", d.ctag, "302-to-tag", d.etag, "to-tag", d2.etag, "agent", dn(2), "answered", 1000)
    f.fact("bye", "D1", "by", "C", 5000)
    return f


def conference():
    f = Flow("conference", "C calls 2001; A1 joins a focus and REFERs C to it; 2002 joins for 3 s; all leave")
    foc = FOCUS_IP
    d1 = Dialog("conf-d1@192.0.2.10", C_USER, C_IP, 5060, "c-conf-d1", dn(1), AGENTS[1], "a1-conf-d1")
    d2 = Dialog("conf-d2@192.0.2.21", dn(1), AGENTS[1], 5062, "a1-conf-d2", FOCUS_USER, foc, "f-conf-d2")
    d3 = Dialog("conf-d3@192.0.2.10", C_USER, C_IP, 5062, "c-conf-d3", FOCUS_USER, foc, "f-conf-d3")
    d4 = Dialog("conf-d4@192.0.2.22", dn(2), AGENTS[2], 5060, "a2-conf-d4", FOCUS_USER, foc, "f-conf-d4")
    c1 = cust_leg(f, "c-d1", d1, 5060, AGENTS[1])
    a1 = f.leg("a1-d1", AGENTS[1], dn(1))
    a1f = f.leg("a1-d2", AGENTS[1], dn(1), 5062, f"{foc}:5060", cid=d2.cid)
    c3 = cust_leg(f, "c-d3", d3, 5062, foc)
    a2 = f.leg("a2-d4", AGENTS[2], dn(2), 5060, f"{foc}:5060", cid=d4.cid)
    fl = f.leg("focus", foc, FOCUS_USER, calls=3)
    fd2, fd3, fd4 = f.plan("focus-d2", FOCUS_USER), f.plan("focus-d3", FOCUS_USER), f.plan("focus-d4", FOCUS_USER)
    c1.at(1000).invite(d1)
    a1.answer(d1)
    a1.sync(1000)
    c1.rtp(1000, 3400)
    a1.rtp(1000, 3400)
    a1f.at(3000).invite(d2)
    fd2.answer(d2, isfocus=True)
    fd2.sync(3000)
    a1f.rtp(3000, 11600)
    fd2.rtp(3000, 11600)
    a1.at(3400)
    refer(a1, d1, "callee", f"sip:{FOCUS_USER}@{foc}:5060")
    c1.sync(3400).ok("REFER", 202, "Accepted")
    c1.at(3450)
    notify(c1, d1, "SIP/2.0 100 Trying", "active;expires=60")
    a1.sync(3450).ok("NOTIFY")
    c3.at(3800).invite(d3, (f"Referred-By: <sip:{dn(1)}@{AGENTS[1]}>",))
    fd3.answer(d3, isfocus=True)
    fd3.sync(3800)
    c3.rtp(3800, 11200)
    fd3.rtp(3800, 11200)
    c1.at(4200)
    notify(c1, d1, "SIP/2.0 200 OK", "terminated;reason=noresource")
    a1.sync(4200).ok("NOTIFY")
    a1.at(4600).request(d1, "callee", "BYE")
    a1.recv("200")
    c1.sync(4600).ok("BYE")
    a2.at(6200).invite(d4)
    fd4.answer(d4, isfocus=True)
    fd4.sync(6200)
    a2.rtp(6200, 9200)
    fd4.rtp(6200, 9200)
    a2.at(9200).request(d4, "caller", "BYE")
    a2.recv("200")
    fd4.sync(9200).ok("BYE")
    c3.at(11200).request(d3, "caller", "BYE")
    c3.recv("200")
    fd3.sync(11200).ok("BYE")
    a1f.at(11600).request(d2, "caller", "BYE")
    a1f.recv("200")
    fd2.sync(11600).ok("BYE")
    fl.branches([("conf-d3@", fd3), ("conf-d4@", fd4), ("", fd2)])
    f.fact("call", "D1", d1.cid, "from-tag", d1.ctag, "to-tag", d1.etag, "agent", dn(1), "answered", 1000)
    f.fact("call", "D2", d2.cid, "from-tag", d2.ctag, "to-tag", d2.etag, "focus", dn(1), "answered", 3000)
    f.fact("refer", "D1", "to", FOCUS_USER, 3400)
    f.fact("call", "D3", d3.cid, "from-tag", d3.ctag, "to-tag", d3.etag, "focus", "C", "answered", 3800)
    f.fact("bye", "D1", "by", dn(1), 4600)
    f.fact("call", "D4", d4.cid, "from-tag", d4.ctag, "to-tag", d4.etag, "focus", dn(2), "answered", 6200)
    f.fact("bye", "D4", "by", dn(2), 9200)
    f.fact("bye", "D3", "by", "C", 11200)
    f.fact("bye", "D2", "by", dn(1), 11600)
    return f


def local3():
    f = Flow("local3", "C calls 2001; A1 holds C, calls 2002, resumes C: A1's phone mixes a three-way call")
    d1 = Dialog("loc-d1@192.0.2.10", C_USER, C_IP, 5060, "c-loc-d1", dn(1), AGENTS[1], "a1-loc-d1")
    d2 = Dialog("loc-d2@192.0.2.21", dn(1), AGENTS[1], 5062, "a1-loc-d2", dn(2), AGENTS[2], "a2-loc-d2")
    c = cust_leg(f, "c-d1", d1, 5060, AGENTS[1])
    a1 = f.leg("a1-d1", AGENTS[1], dn(1))
    a1c = f.leg("a1-d2", AGENTS[1], dn(1), 5062, f"{AGENTS[2]}:5060", cid=d2.cid)
    a2 = f.leg("a2-d2", AGENTS[2], dn(2))
    c.at(1000).invite(d1)
    a1.answer(d1)
    a1.sync(1000)
    c.rtp(1000, 3000)
    a1.rtp(1000, 3000)
    a1.at(3000).reinvite(d1, "callee", "sendonly")
    c.sync(3000).answer_reinvite(d1, "caller", "recvonly")
    a1c.at(3400).invite(d2)
    a2.answer(d2)
    a2.sync(3400)
    a1c.rtp(3400, 8400)
    a2.rtp(3400, 8400)
    a1.at(5400).reinvite(d1, "callee", "sendrecv")
    c.sync(5400).answer_reinvite(d1, "caller", "sendrecv")
    c.rtp(5400, 10400, first=1000)
    a1.rtp(5400, 10400, first=1000)
    a2.at(8400).request(d2, "callee", "BYE")
    a2.recv("200")
    a1c.sync(8400).ok("BYE")
    c.at(10400).request(d1, "caller", "BYE")
    c.recv("200")
    a1.sync(10400).ok("BYE")
    f.fact("call", "D1", d1.cid, "from-tag", d1.ctag, "to-tag", d1.etag, "agent", dn(1), "answered", 1000)
    f.fact("hold", "D1", 3000)
    f.fact("call", "D2", d2.cid, "from-tag", d2.ctag, "to-tag", d2.etag, "consultation", dn(1), dn(2), "answered", 3400)
    f.fact("resume", "D1", 5400)
    f.fact("bye", "D2", "by", dn(2), 8400)
    f.fact("bye", "D1", "by", "C", 10400)
    return f


FLOWS = {"hold": hold,
         "hold-inactive": lambda: hold("hold-inactive", "holdi", "inactive", "inactive"),
         "hold-c0": lambda: hold("hold-c0", "holdc", "c0", "sendrecv"),
         "hold-update": lambda: hold("hold-update", "holdu", "sendonly", "recvonly", "UPDATE"), "blind": blind, "blind3": blind3, "attended": attended, "redirect": redirect,
         "conference": conference, "local3": local3}


def main():
    flows = FLOWS
    if len(sys.argv) == 2 and sys.argv[1] == "list":
        print(" ".join(flows))
    elif len(sys.argv) == 4 and sys.argv[1] == "build":
        if sys.argv[2] not in flows:
            raise SystemExit(f"unknown flow {sys.argv[2]} (flows: {' '.join(flows)})")
        build(flows[sys.argv[2]](), sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "export":
        for name, make in flows.items():
            f = make()
            d = os.path.join(sys.argv[2], name)
            os.makedirs(d, exist_ok=True)
            for leg in f.legs:
                with open(os.path.join(d, leg.name + ".xml"), "w") as fh:
                    fh.write(leg.xml())
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


def write_pcap(path, dur_ms, ts0, seq0, seed):
    """dur_ms of 20 ms PCMA packets of noise, RTP timestamps from ts0, pcap times from 0"""
    rnd = random.Random(seed)
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for n in range(max(1, dur_ms // 20)):
        k = seq0 + n
        payload = rnd.randbytes(160)
        rtp = struct.pack(">BBHII", 0x80, PT, k & 0xFFFF, (ts0 + n * 160) & 0xFFFFFFFF, SSRC) + payload
        udp = struct.pack(">HHHH", 6000, 6000, 8 + len(rtp), 0) + rtp
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), n & 0xFFFF, 0, 64, 17, 0,
                         bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
        frame = b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01" + b"\x08\x00" + ip + udp
        t = n * 20000
        out.append(struct.pack("<IIII", t // 1000000, t % 1000000, len(frame), len(frame)) + frame)
    with open(path, "wb") as fh:
        fh.write(b"".join(out))


def build(f, d):
    os.makedirs(d, exist_ok=True)
    legs = []
    for i, leg in enumerate(f.legs):
        with open(os.path.join(d, leg.name + ".xml"), "w") as fh:
            fh.write(leg.xml().replace("@MEDIA@", d))
        for j, part in enumerate(leg.segments_of):
            for n, (dur, ts0, seq0) in enumerate(part.segments):
                write_pcap(os.path.join(d, f"{part.name}-{n}.pcap"), dur, ts0, seq0, i * 100 + j * 10 + n + 1)
        legs.append(f"{leg.name} {leg.ip} {leg.port} {leg.mp} {leg.calls} {leg.remote or '-'} {leg.cid or '-'}")
    with open(os.path.join(d, "legs"), "w") as fh:
        fh.write("\n".join(legs) + "\n")
    with open(os.path.join(d, "facts"), "w") as fh:
        fh.write(f"flow {f.name}: {f.about}\n" + "\n".join(f.facts) + "\n")


if __name__ == "__main__":
    main()
