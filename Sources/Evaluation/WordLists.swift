import Basics

/// Built-in word lists written for LongContext (no third-party text): adjectives, nouns and verbs used for
/// RULER-style needle keys (`adjective-noun`), common-words lists and the essay-like haystack generator.
/// RULER draws these from the `wonderwords` package; ours are smaller, so the words differ but the shapes
/// (hyphenated `adj-noun` keys, plain English words) match.
public enum WordLists {
    public static let adjectives: [String] = """
    able absent acidic agile alert ancient angry anxious arctic awake basic bitter blank bold brave breezy bright \
    brisk broad bumpy busy calm candid careful casual cheap chilly civil clean clever cloudy clumsy coastal cold \
    common cosmic crisp crowded cruel curly curved damp daring dark decent deep dense dizzy dry dusty eager early \
    earthy elastic elegant empty endless equal even exact faint fancy far fast fierce final firm flat fluffy fond \
    foreign formal fragile frank free fresh friendly frozen fuzzy gentle giant gifted glad global golden grand \
    greasy great green grim grumpy handy happy hardy harsh hasty heavy hidden hollow honest hot huge humble hungry \
    icy idle immense jolly juicy keen kind large late lavish lazy lean light little lively local lonely long loose \
    loud lovely loyal lucky lunar magic major mellow merry mighty mild minor misty modern modest moist narrow neat \
    nervous new nimble noble noisy normal odd old open orange oval pale patient plain plastic pleasant polite \
    polished poor prime proud purple quick quiet rapid rare raw ready real regular rich rigid ripe rough round \
    royal rural rusty sacred salty sandy savage scarce secret serene shaggy sharp shiny short shy silent silky \
    silver simple sleepy slim slow small smart smooth snowy soft solar solid sour spare spicy splendid square \
    stable steady steep sticky stiff still stormy strange strict strong sturdy subtle sunny super sweet swift tall \
    tame tender thick thin tidy tiny tough tricky tropical true twin ugly urban useful vacant vague valid vast \
    velvet vivid warm wary weak wealthy weary wet white wicked wide wild windy wise witty wooden young zealous
    """.split(separator: " ").map(String.init)

    public static let nouns: [String] = """
    acorn actor airport album anchor angle animal ankle apple apron arch arena arrow artist atlas attic avenue \
    badge bakery ball banana band banjo barn barrel basket beach beacon beard bell bench berry bicycle blanket \
    blossom boat bonnet book border bottle boulder bowl branch bread breeze brick bridge brook broom bucket \
    bundle butter button cabin cable cactus camel camera canal candle canoe canyon captain carpet carrot castle \
    cattle cave cellar chair chalk channel chapel cherry chimney circle city clock cloud coast coat coffee comet \
    compass copper corner cottage cotton couch county crane crater crayon creek crown crystal cup curtain cushion \
    dagger daisy dance desert desk diamond dinner doctor dolphin donkey door dragon drawer dream drum eagle \
    engine envelope falcon farmer feather fence ferry festival field finger flag flame flute forest fountain \
    fox garden garlic gate giraffe glacier glove goat guitar hammer harbor harvest helmet hill honey horizon \
    horse island jacket jar jungle kettle kitchen kite ladder lake lantern lemon letter library lighthouse lion \
    lizard lobster magnet mango map marble market meadow melon mirror monkey mountain museum needle nest novel \
    ocean olive orchard otter owl paddle palace panda parade parrot peach pebble pencil pepper piano pillow \
    pilot planet plate pocket pond potato puzzle quarry rabbit radio rainbow raven ribbon river robot rocket \
    saddle sailor salmon school scissors shadow shell shelter shovel signal silk singer sketch sled slipper \
    spider spoon squirrel stadium statue stone storm stove street sugar summit sunset surgeon swan sweater table \
    teacher temple tent thunder ticket tiger timber tomato tower tractor trail train treasure tree trumpet tunnel \
    turtle umbrella valley vase velvet village violin volcano wagon wallet walnut whale wheel whistle window \
    wizard wolf yacht zebra
    """.split(separator: " ").map(String.init)

    public static let verbs: [String] = """
    admire arrive bake balance borrow build carry catch chase climb collect cook count cover dance deliver \
    describe design discover draw drift explore fetch fix fold follow gather guard guide harvest hide hunt \
    imagine inspect invent juggle kick knit launch learn lift listen measure mend mix navigate observe offer \
    open order paint pause plant polish pour practice print pull push question reach record repair rescue \
    return ride roll row sail scatter search sew share shine sing sketch skate slide solve sort sparkle spin \
    splash steer stitch store study swim teach throw trace travel trim visit wander wash watch weave whisper \
    wrap write
    """.split(separator: " ").map(String.init)

    /// `adjective-noun` keys (RULER's `words` needle type).
    public static func key(_ rng: inout SeededRandom) -> String {
        rng.choice(adjectives) + "-" + rng.choice(nouns)
    }

    /// The pool used by common-words extraction: nouns, adjectives and verbs, sorted and de-duplicated.
    public static let commonWordPool: [String] = Array(Set(nouns + adjectives + verbs)).sorted()

    /// A pronounceable pseudo-word (consonant–vowel syllables) for pools larger than the built-in lists.
    public static func pseudoWord(_ rng: inout SeededRandom) -> String {
        let c = Array("bcdfghjklmnprstvwz"), v = Array("aeiou")
        var s = ""
        for _ in 0..<rng.int(2...4) { s.append(c[rng.int(0...(c.count - 1))]); s.append(v[rng.int(0...(v.count - 1))]) }
        return s
    }
}
