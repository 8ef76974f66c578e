// Package keyscli is the command line for gateway keys and teams:
//
//	extproc keys create|list|show|update|rotate|revoke ...
//	extproc teams create|list|show|update|delete ...
//
// It talks to the same store as the gateway: --store file --file PATH, or
// --store redis with --redis-url / --redis-address (the password only from
// LLM_PROXY_KEYS_REDIS_PASSWORD, never a flag, so it stays out of ps).
// Every flag has an environment default (LLM_PROXY_KEYS_STORE,
// LLM_PROXY_KEYS_FILE, LLM_PROXY_KEYS_REDIS_URL, LLM_PROXY_KEYS_REDIS_ADDRESS,
// LLM_PROXY_KEYS_REDIS_PREFIX). Output is JSON on stdout; a new secret is
// printed once, with a reminder on stderr. Exit status: 0 success, 1 the
// operation failed, 2 usage error.
package keyscli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/llm-proxy-extproc/llm-proxy-extproc/internal/redisconf"
	"github.com/llm-proxy-extproc/llm-proxy-extproc/pkg/keys"
)

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

const usage = `usage:
  extproc keys create [--owner U] [--team T] [--description D] [--expires never|720h|RFC3339]
                      [--providers p,...] [--models glob,...] [--rpm N] [--tpm N] [--rpd N] [--tpd N]
                      [--daily-usd X] [--monthly-usd X] [--label k=v]...
  extproc keys list [--team T] [--owner U]
  extproc keys show ID
  extproc keys update ID [same flags as create; only those given change; --label replaces all labels]
  extproc keys rotate ID [--grace 1h]   (0 ends the old secret at once)
  extproc keys revoke ID
  extproc teams create ID [--description D] [--rpm N] [--tpm N] [--rpd N] [--tpd N] [--daily-usd X] [--monthly-usd X] [--label k=v]...
  extproc teams list
  extproc teams show ID
  extproc teams update ID [flags as create]
  extproc teams delete ID
store flags (every command): --store file|redis --file PATH --redis-url URL --redis-address HOST:PORT --redis-prefix P
`

// Run executes one command; args start after the program name ("keys",
// "create", ...). It opens the store from flags and the environment.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return run(ctx, args, stdout, stderr, os.Getenv, nil)
}

// RunWithStore is Run against an already opened store (the gateway's own,
// built from its configuration); the store flags are then ignored.
func RunWithStore(ctx context.Context, store keys.Store, args []string, stdout, stderr io.Writer) int {
	return run(ctx, args, stdout, stderr, os.Getenv, store)
}

type cli struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	store          keys.Store
	now            func() time.Time
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string, store keys.Store) int {
	c := &cli{stdout: stdout, stderr: stderr, getenv: getenv, store: store, now: time.Now}
	if len(args) < 2 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	group, cmd, rest := args[0], args[1], args[2:]
	switch group + " " + cmd {
	case "keys create":
		return c.keysCreate(ctx, rest)
	case "keys list":
		return c.keysList(ctx, rest)
	case "keys show":
		return c.withID(ctx, "keys show", rest, nil, func(ctx context.Context, m *keys.Manager, id string) (any, error) {
			return m.GetKey(ctx, id)
		})
	case "keys update":
		return c.keysUpdate(ctx, rest)
	case "keys rotate":
		var grace time.Duration
		return c.withID(ctx, "keys rotate", rest, func(fs *flag.FlagSet) {
			fs.DurationVar(&grace, "grace", -1, "how long the old secret keeps working (default: 1h)")
		}, func(ctx context.Context, m *keys.Manager, id string) (any, error) {
			k, secret, err := m.Rotate(ctx, id, grace)
			if err != nil {
				return nil, err
			}
			c.secretNotice()
			return withSecret{Key: k, Secret: secret}, nil
		})
	case "keys revoke":
		return c.withID(ctx, "keys revoke", rest, nil, func(ctx context.Context, m *keys.Manager, id string) (any, error) {
			return m.Revoke(ctx, id)
		})
	case "teams create":
		return c.teamsCreate(ctx, rest)
	case "teams list":
		return c.withStore(ctx, "teams list", rest, nil, func(ctx context.Context, m *keys.Manager, _ []string) (any, error) {
			ts, err := m.ListTeams(ctx)
			return map[string]any{"teams": ts}, err
		})
	case "teams show":
		return c.withID(ctx, "teams show", rest, nil, func(ctx context.Context, m *keys.Manager, id string) (any, error) {
			return m.GetTeam(ctx, id)
		})
	case "teams update":
		return c.teamsUpdate(ctx, rest)
	case "teams delete":
		return c.withID(ctx, "teams delete", rest, nil, func(ctx context.Context, m *keys.Manager, id string) (any, error) {
			if err := m.DeleteTeam(ctx, id); err != nil {
				return nil, err
			}
			return map[string]string{"deleted": id}, nil
		})
	}
	fmt.Fprintf(stderr, "unknown command %q\n%s", group+" "+cmd, usage)
	return exitUsage
}

type withSecret struct {
	keys.Key
	Secret string `json:"key"`
}

func (c *cli) secretNotice() {
	fmt.Fprintln(c.stderr, "The \"key\" field is the gateway key. Store it now: it is not shown again.")
}

// storeFlags are accepted by every command.
type storeFlags struct {
	kind, file, redisURL, redisAddress, redisPrefix string
}

func (c *cli) newFlagSet(name string) (*flag.FlagSet, *storeFlags) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() { fmt.Fprint(c.stderr, usage) }
	sf := &storeFlags{}
	fs.StringVar(&sf.kind, "store", c.getenv("LLM_PROXY_KEYS_STORE"), "file or redis")
	fs.StringVar(&sf.file, "file", c.getenv("LLM_PROXY_KEYS_FILE"), "file store path")
	fs.StringVar(&sf.redisURL, "redis-url", c.getenv("LLM_PROXY_KEYS_REDIS_URL"), "redis:// or rediss:// URL")
	fs.StringVar(&sf.redisAddress, "redis-address", c.getenv("LLM_PROXY_KEYS_REDIS_ADDRESS"), "redis host:port")
	fs.StringVar(&sf.redisPrefix, "redis-prefix", c.getenv("LLM_PROXY_KEYS_REDIS_PREFIX"), "redis key prefix (default "+keys.DefaultRedisKeyPrefix+")")
	return fs, sf
}

func (c *cli) open(sf *storeFlags) (keys.Store, error) {
	if c.store != nil {
		return nopClose{c.store}, nil
	}
	switch sf.kind {
	case "file":
		return keys.OpenFileStore(sf.file)
	case "redis":
		rc := redisconf.Config{URL: sf.redisURL, Address: sf.redisAddress, Password: c.getenv("LLM_PROXY_KEYS_REDIS_PASSWORD")}
		rdb, err := rc.NewClient(redisconf.Profile{MaxRetries: -1}) // never repeat a write whose reply was lost
		if err != nil {
			return nil, err
		}
		return keys.NewRedisStore(rdb, sf.redisPrefix, true), nil
	case "":
		return nil, errors.New("no store: pass --store file --file PATH or --store redis --redis-url URL (or set LLM_PROXY_KEYS_STORE)")
	}
	return nil, fmt.Errorf("--store must be file or redis, got %q", sf.kind)
}

type nopClose struct{ keys.Store }

func (nopClose) Close() error { return nil }

// parse parses args with fs, accepting one leading positional argument
// (an id) before the flags as well as after them.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var lead []string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		lead, args = args[:1], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return append(lead, fs.Args()...), nil
}

type action func(ctx context.Context, m *keys.Manager, positional []string) (any, error)

// withStore parses flags, opens the store, runs do and prints its result.
func (c *cli) withStore(ctx context.Context, name string, args []string, flags func(*flag.FlagSet), do action) int {
	fs, sf := c.newFlagSet(name)
	if flags != nil {
		flags(fs)
	}
	pos, err := parse(fs, args)
	if err != nil {
		return exitUsage
	}
	store, err := c.open(sf)
	if err != nil {
		fmt.Fprintln(c.stderr, "error:", err)
		return exitUsage
	}
	defer store.Close()
	out, err := do(ctx, &keys.Manager{Store: store, Now: c.now}, pos)
	if errors.Is(err, errUsage) {
		fmt.Fprintf(c.stderr, "%s: %v\n", name, err)
		return exitUsage
	}
	if err != nil {
		fmt.Fprintf(c.stderr, "%s: %v\n", name, err)
		return exitFail
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		fmt.Fprintln(c.stderr, "error:", err)
		return exitFail
	}
	fmt.Fprintln(c.stdout, string(b))
	return exitOK
}

var errUsage = errors.New("usage")

func (c *cli) withID(ctx context.Context, name string, args []string, flags func(*flag.FlagSet), do func(ctx context.Context, m *keys.Manager, id string) (any, error)) int {
	return c.withStore(ctx, name, args, flags, func(ctx context.Context, m *keys.Manager, pos []string) (any, error) {
		if len(pos) != 1 {
			return nil, fmt.Errorf("%w: expected exactly one id", errUsage)
		}
		return do(ctx, m, pos[0])
	})
}

// attrFlags are the limit, budget and label flags shared by keys and teams.
type attrFlags struct {
	description        string
	rpm, tpm, rpd, tpd int64
	dailyUSD, monthly  float64
	labels             labelList
}

func (a *attrFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.description, "description", "", "free text")
	fs.Int64Var(&a.rpm, "rpm", 0, "requests per minute (0: none)")
	fs.Int64Var(&a.tpm, "tpm", 0, "tokens per minute")
	fs.Int64Var(&a.rpd, "rpd", 0, "requests per day")
	fs.Int64Var(&a.tpd, "tpd", 0, "tokens per day")
	fs.Float64Var(&a.dailyUSD, "daily-usd", 0, "daily budget in USD")
	fs.Float64Var(&a.monthly, "monthly-usd", 0, "monthly budget in USD")
	fs.Var(&a.labels, "label", "k=v, repeatable")
}

func (a *attrFlags) limits() keys.Limits {
	return keys.Limits{RequestsPerMinute: a.rpm, TokensPerMinute: a.tpm, RequestsPerDay: a.rpd, TokensPerDay: a.tpd}
}

func (a *attrFlags) budget() keys.Budget {
	return keys.Budget{DailyUSD: a.dailyUSD, MonthlyUSD: a.monthly}
}

// labelList collects repeated --label k=v flags.
type labelList map[string]string

func (l *labelList) String() string { return "" }

func (l *labelList) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return errors.New("label must be key=value")
	}
	if *l == nil {
		*l = map[string]string{}
	}
	(*l)[k] = val
	return nil
}

type keyFlags struct {
	attrFlags
	owner, team, expires, providers, models string
}

func (k *keyFlags) register(fs *flag.FlagSet) {
	k.attrFlags.register(fs)
	fs.StringVar(&k.owner, "owner", "", "owner (user)")
	fs.StringVar(&k.team, "team", "", "team id")
	fs.StringVar(&k.expires, "expires", "", "never, a duration from now (720h) or an RFC 3339 time")
	fs.StringVar(&k.providers, "providers", "", "comma-separated provider globs (empty: all)")
	fs.StringVar(&k.models, "models", "", "comma-separated model globs (empty: all)")
}

func splitList(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (c *cli) keysCreate(ctx context.Context, args []string) int {
	var kf keyFlags
	return c.withStore(ctx, "keys create", args, kf.register, func(ctx context.Context, m *keys.Manager, pos []string) (any, error) {
		if len(pos) != 0 {
			return nil, fmt.Errorf("%w: unexpected argument %q", errUsage, pos[0])
		}
		spec := keys.KeySpec{
			Owner: kf.owner, Team: kf.team, Description: kf.description,
			Providers: splitList(kf.providers), Models: splitList(kf.models),
			Limits: kf.limits(), Budget: kf.budget(), Labels: kf.labels,
		}
		if kf.expires != "" {
			e, err := keys.ParseExpiry(kf.expires, c.now())
			if err != nil {
				return nil, err
			}
			spec.ExpiresAt = e.Time
		}
		k, secret, err := m.CreateKey(ctx, spec)
		if err != nil {
			return nil, err
		}
		c.secretNotice()
		return withSecret{Key: k, Secret: secret}, nil
	})
}

func (c *cli) keysList(ctx context.Context, args []string) int {
	var team, owner string
	return c.withStore(ctx, "keys list", args, func(fs *flag.FlagSet) {
		fs.StringVar(&team, "team", "", "only keys of this team")
		fs.StringVar(&owner, "owner", "", "only keys of this owner")
	}, func(ctx context.Context, m *keys.Manager, _ []string) (any, error) {
		list, err := m.ListKeys(ctx)
		if err != nil {
			return nil, err
		}
		list = slices.DeleteFunc(list, func(k keys.Key) bool {
			return (team != "" && k.Team != team) || (owner != "" && k.Owner != owner)
		})
		return map[string]any{"keys": list}, nil
	})
}

// visited returns the names of the flags set on the command line.
func visited(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

func (c *cli) keysUpdate(ctx context.Context, args []string) int {
	var kf keyFlags
	var fs *flag.FlagSet
	return c.withStore(ctx, "keys update", args, func(f *flag.FlagSet) { fs = f; kf.register(f) },
		func(ctx context.Context, m *keys.Manager, pos []string) (any, error) {
			if len(pos) != 1 {
				return nil, fmt.Errorf("%w: expected exactly one id", errUsage)
			}
			set := visited(fs)
			var p keys.KeyPatch
			str := func(name string, v string) *string {
				if set[name] {
					return &v
				}
				return nil
			}
			p.Owner, p.Team, p.Description = str("owner", kf.owner), str("team", kf.team), str("description", kf.description)
			if set["providers"] {
				v := splitList(kf.providers)
				p.Providers = &v
			}
			if set["models"] {
				v := splitList(kf.models)
				p.Models = &v
			}
			if set["expires"] {
				e, err := keys.ParseExpiry(kf.expires, c.now())
				if err != nil {
					return nil, err
				}
				p.ExpiresAt = &e
			}
			p.Limits, p.Budget, p.Labels = kf.patchAttrs(ctx, set, func() (keys.Limits, keys.Budget, error) {
				k, err := m.GetKey(ctx, pos[0])
				return k.Limits, k.Budget, err
			})
			return m.UpdateKey(ctx, pos[0], p)
		})
}

// patchAttrs builds the limits, budget and labels of a patch from the
// flags set: a limit flag changes that one number, keeping the others as
// current() reports them.
func (a *attrFlags) patchAttrs(_ context.Context, set map[string]bool, current func() (keys.Limits, keys.Budget, error)) (*keys.Limits, *keys.Budget, *map[string]string) {
	var lp *keys.Limits
	var bp *keys.Budget
	limitSet := set["rpm"] || set["tpm"] || set["rpd"] || set["tpd"]
	budgetSet := set["daily-usd"] || set["monthly-usd"]
	if limitSet || budgetSet {
		l, b, err := current()
		if err == nil {
			if limitSet {
				pick(&l.RequestsPerMinute, a.rpm, set["rpm"])
				pick(&l.TokensPerMinute, a.tpm, set["tpm"])
				pick(&l.RequestsPerDay, a.rpd, set["rpd"])
				pick(&l.TokensPerDay, a.tpd, set["tpd"])
				lp = &l
			}
			if budgetSet {
				pick(&b.DailyUSD, a.dailyUSD, set["daily-usd"])
				pick(&b.MonthlyUSD, a.monthly, set["monthly-usd"])
				bp = &b
			}
		}
		// On error the update itself reports it (not found, store down).
	}
	var labels *map[string]string
	if set["label"] {
		v := map[string]string(a.labels)
		labels = &v
	}
	return lp, bp, labels
}

func pick[T any](dst *T, v T, set bool) {
	if set {
		*dst = v
	}
}

func (c *cli) teamsCreate(ctx context.Context, args []string) int {
	var af attrFlags
	return c.withStore(ctx, "teams create", args, af.register, func(ctx context.Context, m *keys.Manager, pos []string) (any, error) {
		if len(pos) != 1 {
			return nil, fmt.Errorf("%w: expected exactly one team id", errUsage)
		}
		return m.CreateTeam(ctx, keys.TeamSpec{ID: pos[0], Description: af.description, Limits: af.limits(), Budget: af.budget(), Labels: af.labels})
	})
}

func (c *cli) teamsUpdate(ctx context.Context, args []string) int {
	var af attrFlags
	var fs *flag.FlagSet
	return c.withStore(ctx, "teams update", args, func(f *flag.FlagSet) { fs = f; af.register(f) },
		func(ctx context.Context, m *keys.Manager, pos []string) (any, error) {
			if len(pos) != 1 {
				return nil, fmt.Errorf("%w: expected exactly one team id", errUsage)
			}
			set := visited(fs)
			var p keys.TeamPatch
			if set["description"] {
				p.Description = &af.description
			}
			p.Limits, p.Budget, p.Labels = af.patchAttrs(ctx, set, func() (keys.Limits, keys.Budget, error) {
				t, err := m.GetTeam(ctx, pos[0])
				return t.Limits, t.Budget, err
			})
			return m.UpdateTeam(ctx, pos[0], p)
		})
}
