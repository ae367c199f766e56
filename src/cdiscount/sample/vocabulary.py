"""French title words printed on synthetic book and CD covers, per genre (``category_id``).

Covers of different genres look alike (same colours, same layout); only these printed words
reveal the genre, which is what makes an OCR side model worth having. A few words are shared
between genres on purpose ("chansons", "histoire", "nuit"), as on real shelves.
"""
from __future__ import annotations

#: category_id -> words that point to that genre.
GENRE_WORDS: dict[int, list[str]] = {
    # LIBRAIRIE
    1000014238: ["meurtre", "enquête", "crime", "inspecteur", "suspect", "police", "assassin", "nuit"],  # POLICIER
    1000014276: ["galaxie", "robot", "planète", "vaisseau", "étoiles", "futur", "androïde", "cosmos"],  # SCIENCE-FICTION
    1000014075: ["recettes", "cuisine", "gâteaux", "saveurs", "terroir", "desserts", "marmite", "potager"],  # CUISINE
    1000014152: ["histoire", "napoléon", "révolution", "empire", "royaume", "bataille", "république", "rois"],
    1000014206: ["poèmes", "poésie", "sonnets", "rêverie", "ballades", "odes", "lune", "nuit"],  # POESIE
    1000014053: ["manga", "ninja", "samouraï", "tome", "sensei", "dragon", "shonen", "héros"],  # MANGA
    1000014019: ["chats", "chiens", "animaux", "chevaux", "oiseaux", "félins", "loups", "ferme"],  # ANIMAUX
    1000014090: ["droit", "civil", "code", "contrats", "obligations", "propriété", "juridique", "famille"],
    # MUSIQUE
    1000018286: ["jazz", "blues", "swing", "saxophone", "trompette", "quartet", "groove", "nuit"],  # JAZZ BLUES
    1000018290: ["symphonie", "concerto", "sonate", "orchestre", "mozart", "opéra", "violon", "requiem"],
    1000018298: ["rap", "flow", "street", "freestyle", "banlieue", "beats", "mixtape", "hiphop"],  # RAP
    1000018284: ["metal", "hard", "enfer", "guitare", "tonnerre", "ténèbres", "riffs", "rock"],  # HARD ROCK
    1000018304: ["chansons", "amour", "paris", "coeur", "tendresse", "été", "mélodies", "souvenirs"],  # VARIETE FR
    1000018282: ["comptines", "enfants", "berceuses", "rondes", "petits", "doudou", "lapin", "chansons"],
}

#: Neutral words mixed into titles (carry no genre information).
FILLER_WORDS = ["le", "la", "les", "grand", "petit", "nouveau", "intégrale", "édition", "volume", "collection"]

#: Author / artist names printed under the title (no genre information).
NAMES = ["Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy",
         "Moreau", "Simon", "Laurent", "Lefèvre", "Michel", "Garcia", "David", "Bertrand", "Roux"]
